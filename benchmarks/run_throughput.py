"""Whole-run throughput: env steps/s and updates/s with serial vs parallel collection, same machine, same run.

Each case is a real ``recipes/train.py`` run in a child process, once per ``--envs`` value: ``envs=1``
steps the env in the learner's process; ``envs=N`` steps N envs in worker processes (TorchRL
``ParallelEnv``, one thread each) while the policy runs batched in the learner's process. Two regimes:

* ``collection``: train ratio 1 (one update per 1024 env steps), so the run is bounded by collection;
* ``official``: the official train ratio of the env family (Atari 256), bounded by the learner.

Reported per run: whole-run rates (``done`` counters over the run's wall time, start-up, prefill and
evaluation included) and training-phase rates (the mean of the run's own ``perf/*`` logs after prefill).
Writes ``benchmarks/results/run_throughput.json`` and ``docs/img/run_throughput.png``.

Usage:
    python benchmarks/run_throughput.py                          # atari/Boxing, tiny preset, envs 1 2 4
    python benchmarks/run_throughput.py --quick --out /tmp/t.json --png /tmp/t.png   # smoke run
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# (name, train ratio, env steps, prefill): short enough for this CPU with the tiny preset
REGIMES = {"collection": (1, 3000, 1000), "official": (256, 1400, 1000)}
QUICK = {"collection": (1, 400, 200), "official": (256, 264, 200)}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_case(env: str, envs: int, train_ratio: float, steps: int, prefill: int, model: str, threads: int,
             extra: list[str], work: Path, learners: int = 1, ray_workers: int = 0) -> dict:
    """One ``recipes/train.py`` run (under ``torchrun`` with ``learners`` > 1 processes; collecting with
    ``ray_workers`` Ray workers when > 0, which share the machine's cores); its rates."""
    run_dir = work / f"{env.replace('/', '_')}_tr{train_ratio:g}_envs{envs}_learners{learners}_ray{ray_workers}"
    if ray_workers:
        cpus = min(1.0, (os.cpu_count() or 1) / ray_workers)  # Ray must be able to place every worker
        extra = [*extra, "collector.backend=ray", f"collector.workers={ray_workers}", f"collector.worker_cpus={cpus:g}"]
    shutil.rmtree(run_dir, ignore_errors=True)
    launcher = ([sys.executable, "-m", "torch.distributed.run", f"--nproc_per_node={learners}",
                 f"--master_port={free_port()}"] if learners > 1 else [sys.executable])
    threads = max(1, threads // learners)  # the learners share the cores
    cmd = [*launcher, str(ROOT / "recipes" / "train.py"), f"env={env}", f"model={model}", f"envs={envs}",
           f"steps={steps}", f"prefill={prefill}", f"train_ratio={train_ratio}", f"threads={threads}",
           f"eval.every={10 * steps}", "eval.episodes=1", "eval.max_steps=200", "logger.mode=disabled",
           "logger.every=100", "logger.video=false", "progress=false", f"checkpoint_every={10 * steps}",
           f"run_dir={run_dir}", *extra]
    started = time.time()
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
    wall = time.time() - started
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-3000:]}")
    done = json.loads((run_dir / "done").read_text())
    perf = [json.loads(line) for line in open(run_dir / "metrics.jsonl")]
    # training phase: windows that start after prefill (the first window after it still holds random steps)
    phase = [m for m in perf if "perf/env_steps_per_s" in m and m["env_step"] > prefill + 100]
    mean = (lambda key: sum(m[key] for m in phase) / len(phase) if phase else None)
    return {
        "envs": envs, "learners": learners, "ray_workers": ray_workers, "threads_per_learner": threads,
        "train_ratio": train_ratio,
        "env_steps": done["env_steps"], "updates": done["updates"],
        "process_wall_s": round(wall, 2), "run_wall_s": round(done["wall_time_s"], 2),
        "env_steps_per_s": round(done["env_steps"] / done["wall_time_s"], 2),
        "updates_per_s": round(done["updates"] / done["wall_time_s"], 3),
        "train_phase_env_steps_per_s": None if mean("perf/env_steps_per_s") is None
        else round(mean("perf/env_steps_per_s"), 2),
        "train_phase_updates_per_s": None if mean("perf/updates_per_s") is None
        else round(mean("perf/updates_per_s"), 3),
    }


def rate(row: dict, key: str) -> float:
    """The training-phase rate where the run logged one, else the whole-run rate."""
    return row[f"train_phase_{key}"] or row[key]


def add_common_args(p: argparse.ArgumentParser, name: str, envs=(1, 2, 4)) -> None:
    """The options this benchmark and ``scale.py`` share; ``name`` names the default JSON and PNG."""
    p.add_argument("--env", default="atari/Boxing")
    p.add_argument("--model", default="tiny")
    p.add_argument("--envs", type=int, nargs="+", default=list(envs))
    p.add_argument("--threads", type=int, default=os.cpu_count() or 2, help="learner torch threads")
    p.add_argument("--quick", action="store_true", help="tiny budgets (a smoke test, not a measurement)")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / f"{name}.json")
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / f"{name}.png")
    p.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. batch_size=8")


def header(args, argv, script: str) -> dict:
    """What every result file records: settings, machine, date, load and the command."""
    return {"env": args.env, "model": args.model, "threads": args.threads, "overrides": args.overrides,
            "quick": args.quick, "cpu_count": os.cpu_count(), "platform": platform.platform(),
            "date": datetime.datetime.now().isoformat(timespec="seconds"),
            "load_average_before": os.getloadavg()[0],
            "command": f"python benchmarks/{script} " + " ".join(sys.argv[1:] if argv is None else argv)}


def save_figure(fig, result: dict, png: Path) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(f"{result['env']} ({result['model']} preset), {result['cpu_count']} CPUs", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def write_result(result: dict, args, plot) -> None:
    """The load after the runs, the JSON at ``args.out`` and ``plot(result, args.png)``."""
    result["load_average_after"] = os.getloadavg()[0]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    plot(result, args.png)
    print(f"wrote {args.out} and {args.png}")


def plot(result: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = list(result["regimes"])
    fig, axes = plt.subplots(1, len(regimes), figsize=(4.5 * len(regimes), 3.6), squeeze=False)
    for ax, regime in zip(axes[0], regimes):
        rows = result["regimes"][regime]["runs"]
        labels = ["serial" if r["envs"] == 1 else f"{r['envs']} workers" for r in rows]
        values = [rate(r, "env_steps_per_s") for r in rows]
        bars = ax.bar(labels, values, color=["tab:gray"] + ["tab:blue"] * (len(rows) - 1))
        for bar, r in zip(bars, rows):
            ax.text(bar.get_x() + bar.get_width() / 2, bar.get_height(), f"{r['updates_per_s']:.2f} upd/s",
                    ha="center", va="bottom", fontsize=8)
        ax.set_title(f"{regime}: train ratio {rows[0]['train_ratio']:g}")
        ax.set_ylabel("env steps / s (training phase)")
    save_figure(fig, result, png)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    add_common_args(p, "run_throughput")
    p.add_argument("--regimes", nargs="+", default=list(REGIMES), choices=list(REGIMES))
    args = p.parse_args(argv)
    if 1 not in args.envs:
        p.error("--envs must include 1 (the serial baseline)")
    budgets = QUICK if args.quick else REGIMES
    result = {**header(args, argv, "run_throughput.py"), "regimes": {}}
    with tempfile.TemporaryDirectory(prefix="run_throughput_") as tmp:
        for regime in args.regimes:
            train_ratio, steps, prefill = budgets[regime]
            rows = []
            for envs in sorted(args.envs):
                row = run_case(args.env, envs, train_ratio, steps, prefill, args.model, args.threads,
                               args.overrides, Path(tmp))
                rows.append(row)
                print(f"{regime:10s} envs={envs}: {row['env_steps_per_s']:7.1f} env steps/s whole run, "
                      f"{row['train_phase_env_steps_per_s']} in training, {row['updates_per_s']:.3f} updates/s",
                      flush=True)
            serial = rows[0]
            for row in rows:  # ratios against the serial run of the same regime, measured in this invocation
                row["env_steps_speedup"] = round(row["env_steps_per_s"] / serial["env_steps_per_s"], 3)
                if row["train_phase_env_steps_per_s"] and serial["train_phase_env_steps_per_s"]:
                    row["train_phase_speedup"] = round(
                        row["train_phase_env_steps_per_s"] / serial["train_phase_env_steps_per_s"], 3)
            result["regimes"][regime] = {"train_ratio": train_ratio, "steps": steps, "prefill": prefill, "runs": rows}
    write_result(result, args, plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
