"""Scaling on one machine: env steps/s against env worker processes, updates/s against learner processes.

Two sweeps of real ``recipes/train.py`` runs, all in one invocation (so the ratios compare like with like):

* **env workers** (``envs=1, 2, 4``: TorchRL ``ParallelEnv``), collection-bound (train ratio 1): env steps/s;
* **Ray workers** (``collector.backend=ray``, ``collector.workers=1, 2, 4``: TorchRL ``RayCollector``, one env
  each), collection-bound, after a local ``envs=1`` baseline row: env steps/s;
* **learner processes** (1 and 2 ranks under ``torchrun``, DDP, the cores split between them), at the
  official train ratio: updates/s of the whole run (each update is one optimizer step on the full batch,
  split over the ranks).

Rates are those of the training phase (the run's own ``perf/*`` logs after prefill) and of the whole run.
Writes ``benchmarks/results/scale.json`` and ``docs/img/scale.png``.

Usage:
    python benchmarks/scale.py                                   # atari/Boxing, tiny preset
    python benchmarks/scale.py --sweeps ray_workers --out benchmarks/results/scale_ray.json --png docs/img/scale_ray.png
    python benchmarks/scale.py --quick --env gym/CartPole-v1 --out /tmp/s.json --png /tmp/s.png   # smoke
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from run_throughput import (QUICK, REGIMES, add_common_args, header, rate, run_case, save_figure,  # noqa: E402
                            write_result)


def plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(sweep, x, key, label) for sweep, x, key, label in (
        ("env_workers", "envs", "env_steps_per_s", "env steps / s"),
        ("ray_workers", "ray_workers", "env_steps_per_s", "env steps / s"),
        ("learners", "learners", "updates_per_s", "updates / s")) if sweep in result]
    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (sweep, x, key, label) in zip(axes[0], panels):
        rows = [r for r in result[sweep]["runs"] if x != "ray_workers" or r["ray_workers"]]
        xs, ys = [r[x] for r in rows], [rate(r, key) for r in rows]
        ax.plot(xs, ys, "o-", label="measured")
        ax.plot(xs, [ys[0] * n / xs[0] for n in xs], "--", color="gray", label="linear")
        if x == "ray_workers":  # the local collector's rate, same invocation
            local = next(r for r in result[sweep]["runs"] if not r["ray_workers"])
            ax.axhline(rate(local, key), color="tab:green", ls=":", label="local collector, 1 env")
        ax.set_xticks(xs)
        ax.set_xlabel({"envs": "env worker processes", "learners": "learner processes",
                       "ray_workers": "Ray workers"}[x])
        ax.set_ylabel(label)
        ax.set_title(f"{sweep.replace('_', ' ')}: train ratio {rows[0]['train_ratio']:g}")
        ax.legend(fontsize=8)
    save_figure(fig, result, png)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(p, "scale")  # --threads: split over the learner processes
    p.add_argument("--learners", type=int, nargs="+", default=[1, 2])
    p.add_argument("--ray-workers", type=int, nargs="+", default=[1, 2, 4])
    p.add_argument("--sweeps", nargs="+", default=["env_workers", "ray_workers", "learners"],
                   choices=["env_workers", "ray_workers", "learners"])
    args = p.parse_args(argv)
    budgets = QUICK if args.quick else REGIMES
    result = header(args, argv, "scale.py")
    sweeps = {"env_workers": ("collection", [dict(envs=n) for n in sorted(args.envs)]),
              # the first row: the local collector with one env, the baseline of the Ray rows
              "ray_workers": ("collection", [dict(ray_workers=0)] + [dict(ray_workers=n) for n in sorted(args.ray_workers)]),
              "learners": ("official", [dict(learners=n) for n in sorted(args.learners)])}
    sweeps = {k: v for k, v in sweeps.items() if k in args.sweeps}
    with tempfile.TemporaryDirectory(prefix="scale_") as tmp:
        for sweep, (regime, cases) in sweeps.items():
            train_ratio, steps, prefill = budgets[regime]
            rows = []
            for case in cases:
                row = run_case(args.env, case.get("envs", 1), train_ratio, steps, prefill, args.model, args.threads,
                               args.overrides, Path(tmp), learners=case.get("learners", 1),
                               ray_workers=case.get("ray_workers", 0))
                rows.append(row)
                print(f"{sweep}: envs={row['envs']} learners={row['learners']} ray_workers={row['ray_workers']}: "
                      f"{rate(row, 'env_steps_per_s'):.1f} env steps/s, {rate(row, 'updates_per_s'):.3f} updates/s",
                      flush=True)
            key = "updates_per_s" if sweep == "learners" else "env_steps_per_s"
            for row in rows:  # speed-up over the first row of the same sweep, measured in this invocation
                row["speedup"] = round(rate(row, key) / rate(rows[0], key), 3)
            result[sweep] = {"regime": regime, "train_ratio": train_ratio, "steps": steps, "prefill": prefill,
                             "runs": rows}
    write_result(result, args, plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
