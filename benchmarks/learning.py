"""Learning benchmark: eval return over env steps, per seed, against a random policy.

    python benchmarks/learning.py --task cartpole --seeds 0 1 2 --parallel 2
    python benchmarks/learning.py --task pendulum --seeds 0 1 2 --parallel 2
    python benchmarks/learning.py --task cartpole --compare uniform,prioritized --parallel 2
    python benchmarks/learning.py --task mountaincar --compare dreamerv3,intrinsic --parallel 2
    python benchmarks/learning.py --task cartpole --compare float32,bfloat16 --parallel 6 --threads 1

Each seed is a full ``recipes/train.py`` run (its own run directory under ``--runs``). Writes
``benchmarks/results/learning_<task>.json`` (per seed: env steps, eval returns, the random-policy
return; the bar and whether it was met) and ``docs/img/learning_<task>.png`` (curves, mean, random line).
Runs already finished (``done`` present) are read, not rerun. A run stopped by SIGTERM or Ctrl-C
checkpoints first (``training/graceful_stop.py``); no further run starts, and the same command resumes them
(``pkill -TERM -f recipes/train.py`` stops every training run on the machine). ``--compare`` runs each variant (an
``xp`` setting) over the seeds and writes ``learning_<task>_compare.json`` and a plot of every variant;
the ``uniform``/``dreamerv3`` variant shares its run directories with the plain benchmark.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from torchrl_dreamerxp.training.graceful_stop import STOPPED_EXIT_CODES, stopped_by_signal  # noqa: E402

TASKS = {
    # bars from the DreamerV3 issue: mean final eval return over seeds at the given env steps
    # cartpole and pendulum run on the gym family's defaults (configs/family/gym.yaml: vector_small, train
    # ratio 256; no per-task setting); compile=true only makes the updates faster
    "cartpole": dict(env="gym/CartPole-v1", steps=20000, bar=450.0,
                     extra=["eval.every=2000", "eval.episodes=5", "compile=true"]),
    "pendulum": dict(env="gym/Pendulum-v1", steps=30000, bar=-300.0,
                     extra=["eval.every=3000", "eval.episodes=5", "compile=true"]),
    # exploration (intrinsic-reward issue): sparse goal reward (+100) with an action cost that teaches a
    # plain agent to stand still; "bar" is the goal (an episode return above 80 means the car got there)
    "mountaincar": dict(env="gym/MountainCarContinuous-v0", model="vector_small", steps=20000, bar=80.0,
                        extra=["eval.every=5000", "eval.episodes=3", "train_ratio=32"]),
}


# variant -> recipe overrides; "uniform" and "dreamerv3" are plain DreamerV3 (the default xp=none)
VARIANTS = {"dreamerv3": ["xp=none"], "uniform": ["xp=none"], "prioritized": ["xp=prioritized"],
            "intrinsic": ["xp=intrinsic"], "full": ["xp=full"],
            # the bf16 issue: the same agent computing in float32 or in bfloat16
            "float32": ["precision=float32"], "bfloat16": ["precision=bfloat16"]}


STOPPED = threading.Event()  # set when a run stops on a signal: no further run of this invocation starts


class RunsStopped(RuntimeError):
    """A run stopped on a signal, its checkpoint kept: the same command resumes it."""

    def __str__(self) -> str:
        return f"{self.args[0]}; the same command resumes every unfinished run from its checkpoint"


def run_seed(task: dict, seed: int, runs: Path, threads: int, overrides: list[str]) -> Path:
    run_dir = runs / f"seed{seed}"
    if (run_dir / "done").exists():
        return run_dir
    if STOPPED.is_set():
        raise RunsStopped(f"{run_dir}: not started, another run was stopped")
    model = [f"model={task['model']}"] if task.get("model") else []  # none: the env family's preset
    resume = (run_dir / "checkpoints").exists()  # once a checkpoint exists
    cmd = [sys.executable, str(ROOT / "recipes" / "train.py"), f"env={task['env']}", *model, f"seed={seed}",
           f"steps={task['steps']}", f"run_dir={run_dir}", "logger.mode=disabled", "progress=false",
           f"threads={threads}", f"resume={str(resume).lower()}", *task["extra"], *overrides]
    run_dir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": str(threads)}
    with open(run_dir / "stdout.log", "a") as log:
        code = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT).returncode
    if stopped_by_signal(code):
        STOPPED.set()
        raise RunsStopped(f"{run_dir}: stopped by a signal (exit code {code}), its last checkpoint kept")
    if code:
        raise subprocess.CalledProcessError(code, cmd)
    return run_dir


def read_run(run_dir: Path) -> dict:
    """The eval curve and counters (``experiments.store.read_run``) plus the best training episode."""
    from torchrl_dreamerxp.experiments.store import read_run as read_run_dir

    run = read_run_dir(run_dir)
    train_returns = []
    if (run_dir / "metrics.jsonl").exists():
        for line in open(run_dir / "metrics.jsonl"):
            row = json.loads(line)
            if "train/episode_return" in row:
                train_returns.append(row["train/episode_return"])
    return {
        "env_steps": [step for step, _ in run["curve"]],
        "eval_return": [ret for _, ret in run["curve"]],
        "random_return": run["random_return"],
        "updates": run["updates"],
        "max_train_return": max(train_returns) if train_returns else None,
        "train_episodes": len(train_returns),
        "wall_time_s": run["wall_time_s"],
    }


def save_curve_plot(fig, ax, xlabel: str, title: str, out_png: Path, legend_size: int = 8) -> None:
    """Axis labels, grid and legend of a return curve; saves and closes the figure."""
    import matplotlib.pyplot as plt

    ax.set_xlabel(xlabel)
    ax.set_ylabel("eval return")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=legend_size)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=100)
    plt.close(fig)


def finish_plot(fig, ax, task: dict, title: str, out_png: Path) -> None:
    """The bar line every learning plot shares, then :func:`save_curve_plot`."""
    ax.axhline(task["bar"], color="green", linestyle=":", label=f"bar {task['bar']:g}")
    save_curve_plot(fig, ax, "env steps", title, out_png)


def plot(task_name: str, task: dict, per_seed: dict, out_png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    curves = []
    for seed, run in per_seed.items():
        ax.plot(run["env_steps"], run["eval_return"], alpha=0.4, label=f"seed {seed}")
        curves.append(run["eval_return"])
    n = min(len(c) for c in curves)
    steps = next(iter(per_seed.values()))["env_steps"][:n]
    ax.plot(steps, np.mean([c[:n] for c in curves], 0), color="black", linewidth=2, label="mean")
    randoms = [r["random_return"] for r in per_seed.values() if r["random_return"] is not None]
    if randoms:
        ax.axhline(float(np.mean(randoms)), color="gray", linestyle="--", label="random policy")
    finish_plot(fig, ax, task, f"DreamerV3 on {task['env']} ({task.get('model', 'family preset')})", out_png)


def plot_compare(task: dict, variants: dict[str, dict], out_png: Path) -> None:
    """Mean eval return per variant (bold) over its seeds (faint)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6.5, 4))
    for i, (name, per_seed) in enumerate(variants.items()):
        color = f"C{i}"
        curves = [r["eval_return"] for r in per_seed.values()]
        n = min(len(c) for c in curves)
        steps = next(iter(per_seed.values()))["env_steps"][:n]
        for c in curves:
            ax.plot(steps, c[:n], color=color, alpha=0.25)
        ax.plot(steps, np.mean([c[:n] for c in curves], 0), color=color, linewidth=2, label=f"{name} (mean of {len(curves)})")
    finish_plot(fig, ax, task, f"{task['env']} ({task.get('model', 'family preset')})", out_png)


def summarize(per_seed: dict, bar: float) -> dict:
    """Final eval return per seed and its mean against the bar; per seed also whether the bar was ever
    passed by an evaluation or a training episode (the exploration question: did it reach the goal?), the
    first evaluated step at or above the bar and the mean over every evaluation (how fast it got there: two
    variants can end equal and differ on the way; ``tests/test_learning_bench.py``)."""
    finals = [r["eval_return"][-1] for r in per_seed.values()]
    mean_final = sum(finals) / len(finals)
    reached = {seed: {"eval": max(r["eval_return"]) >= bar,  # "at the bar" counts, as for first_step_at_bar
                      "train": r.get("max_train_return") is not None and r["max_train_return"] >= bar}
               for seed, r in per_seed.items()}
    first = {seed: next((s for s, y in zip(r["env_steps"], r["eval_return"]) if y >= bar), None)
             for seed, r in per_seed.items()}
    means = {seed: sum(r["eval_return"]) / len(r["eval_return"]) for seed, r in per_seed.items()}
    return {"seeds": per_seed, "final_returns": finals, "mean_final_return": mean_final, "bar_met": mean_final >= bar,
            "bar_passed_per_seed": reached, "first_step_at_bar": first, "mean_eval_return": means}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", choices=sorted(TASKS), required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--parallel", type=int, default=1, help="runs at once (each with cores/parallel threads)")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: cores/parallel)")
    parser.add_argument("--runs", type=Path, default=ROOT / "runs", help="base folder of the run directories")
    parser.add_argument("--compare", default=None, help=f"comma-separated variants of {sorted(VARIANTS)}")
    parser.add_argument("--out-json", type=Path, default=None)
    parser.add_argument("--out-png", type=Path, default=None)
    parser.add_argument("overrides", nargs="*", help="extra recipe overrides, e.g. train_ratio=32")
    args = parser.parse_args()
    task = TASKS[args.task]
    threads = args.threads or max(1, (os.cpu_count() or 2) // args.parallel)
    start = time.time()

    def run_all(jobs: dict[str, tuple[Path, list[str]]]) -> dict[str, dict]:
        """Every (variant, seed) run in one pool, so the variants share the machine's conditions."""
        pairs = [(name, seed) for name in jobs for seed in args.seeds]
        with ThreadPoolExecutor(args.parallel) as pool:
            dirs = list(pool.map(lambda p: run_seed(task, p[1], jobs[p[0]][0], threads, jobs[p[0]][1]), pairs))
        out: dict[str, dict] = {name: {} for name in jobs}
        for (name, seed), d in zip(pairs, dirs):
            out[name][seed] = read_run(d)
        return out

    head = {"task": args.task, **{k: task.get(k, "family preset") for k in ("env", "model", "steps", "bar")},
            "extra": task["extra"], "overrides": args.overrides}
    results_dir, img_dir = ROOT / "benchmarks" / "results", ROOT / "docs" / "img"
    if args.compare:
        names = args.compare.split(",")
        unknown = sorted(set(names) - set(VARIANTS))
        if unknown:
            raise SystemExit(f"unknown variants {unknown}; choose from {sorted(VARIANTS)}")
        jobs = {}
        for name in names:
            plain = VARIANTS[name] == ["xp=none"]
            runs = args.runs / (f"learning_{args.task}" if plain else f"learning_{args.task}_{name}")
            jobs[name] = (runs, [*VARIANTS[name], *args.overrides])
        variants = run_all(jobs)
        result = {**head, "variants": {n: summarize(v, task["bar"]) for n, v in variants.items()}}
        out_json = args.out_json or results_dir / f"learning_{args.task}_compare.json"
        plot_compare(task, variants, args.out_png or img_dir / f"learning_{args.task}_compare.png")
        summary = {n: {k: v[k] for k in ("final_returns", "mean_final_return", "first_step_at_bar", "mean_eval_return")}
                   for n, v in result["variants"].items()}
    else:
        per_seed = run_all({"": (args.runs / f"learning_{args.task}", args.overrides)})[""]
        result = {**head, **summarize(per_seed, task["bar"])}
        out_json = args.out_json or results_dir / f"learning_{args.task}.json"
        plot(args.task, task, per_seed, args.out_png or img_dir / f"learning_{args.task}.png")
        summary = {k: result[k] for k in ("final_returns", "mean_final_return", "bar_met")}
    result.update(wall_clock_s=time.time() - start, command=" ".join(sys.argv))
    out_json.parent.mkdir(parents=True, exist_ok=True)
    out_json.write_text(json.dumps(result, indent=1))
    print(json.dumps({"task": args.task, **summary}))


if __name__ == "__main__":
    try:
        main()
    except RunsStopped as err:
        print(err, flush=True)
        raise SystemExit(STOPPED_EXIT_CODES[0])
