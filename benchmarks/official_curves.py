"""Our DreamerV3 on DMC proprio beside the official DreamerV3's own learning curves, at equal env frames.

    python benchmarks/official_curves.py --parallel 2 --threads 1            # run (or resume) every task, then report
    python benchmarks/official_curves.py --report-only                       # tables and plots of what exists
    python benchmarks/official_curves.py --tasks walker_stand --seeds 0      # a subset
    python benchmarks/official_curves.py --tag tr128 train_ratio=128         # a variant, in files of its own

The anchor is ``benchmarks/results/official_dmc_proprio_dreamerv3.json``: the per-seed curves of
danijar/dreamerv3 ``scores/dmc_proprio-dreamerv3.json.gz`` (5 seeds, one point per 10k env frames), whose
x-axis is env frames (agent steps × action repeat 2: the official logger multiplies its step counter by the
repeat). Each of our runs is a ``recipes/train.py`` run of ``dmc_proprio/<task>`` with the settings below, in
its own run directory under ``--runs``; an interrupted run resumes from its newest checkpoint (``resume=true``)
the next time this script starts, so a long budget accumulates over several sessions. A run's eval points are
read from its ``eval.csv`` whether it has finished or not.

Writes ``benchmarks/results/official_curves.json`` (per task and seed: env frames, eval returns, the training terms
logged at each evaluation (``TERMS``: world model losses, critic loss, imagined return, entropy), updates, wall
time; the official mean/min/max at every 10k frames; ours vs official at each point) and
``docs/img/official_<task>.png`` (our seeds over the official band and mean). ``--tag T`` with recipe overrides
(say ``train_ratio=128``) keeps a variant apart: run directories ``runs/official_curves_T``, files
``official_curves_T.json`` and ``official_<task>_T.png``.

The JSON outlives the run directories (they are not in the repository; a fresh checkout has none): a run whose
directory is missing, or has got less far than the JSON records, keeps the recorded entry (marked
``"from_record": true``) instead of being reported empty, and an invocation on a subset (``--tasks``, ``--seeds``)
keeps the recorded tasks and seeds it did not name. A record is only kept under the same overrides.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
OFFICIAL = ROOT / "benchmarks" / "results" / "official_dmc_proprio_dreamerv3.json"
ACTION_REPEAT = 2  # dmc_proprio's (official and ours): the official x-axis is agent steps × 2

# our name (dmc_proprio/<name>) -> (the official file's name, env frames to run)
TASKS = {
    "walker_stand": ("walker_stand", 50_000),
    "finger_spin": ("finger_spin", 50_000),
    "reacher_easy": ("reacher_easy", 100_000),
    "cup_catch": ("ball_in_cup_catch", 100_000),
}
# the dmc_proprio family's defaults (configs/family/dmc_proprio.yaml: vector_small, the official train ratio 512,
# action repeat 2) plus these; compile=true only makes the updates faster (same losses)
SETTINGS = ["compile=true", "eval.episodes=5", "checkpoint_every=1000", "checkpoint_keep=2"]
EVAL_EVERY_FRAMES = 10_000  # the official point spacing
# an evaluation comes at the end of the first collection round past its step (16 agent steps = 32 frames):
# ours at frame f stands for the official point x when x <= f < x + ROUND_FRAMES
ROUND_FRAMES = 16 * ACTION_REPEAT


def run_task(task: str, seed: int, runs: Path, threads: int, extra: list[str]) -> Path | None:
    """One run to its budget (or resumed to it); ``None`` when another invocation holds it (its lock)."""
    import fcntl

    from learning import run_seed

    run_dir = runs / task / f"seed{seed}"
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = open(run_dir / ".lock", "w")
    try:  # two invocations (say one per core) never train the same run directory
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        print(f"{run_dir}: held by another invocation, skipped", flush=True)
        return None
    frames = TASKS[task][1]
    spec = {"env": f"dmc_proprio/{task}", "steps": frames // ACTION_REPEAT,
            "extra": [*SETTINGS, f"eval.every={EVAL_EVERY_FRAMES // ACTION_REPEAT}", *extra]}
    return run_seed(spec, seed, runs / task, threads, [])


# the training terms logged beside each evaluation, to tell which one lags where a curve falls short
TERMS = ("train/loss_model_reconstruction", "train/loss_model_reward", "train/loss_model_kl_dyn",
         "train/loss_critic", "train/imagined_return", "train/return_scale", "train/entropy", "train/updates")


def terms_at_evals(run_dir: Path, frames: list[int]) -> list[dict]:
    """Per evaluation, the last logged value of each of ``TERMS`` at or before its frame (``{}`` before any)."""
    from torchrl_dreamerxp.experiments.report import run_series

    series = {k: run_series({"run_dir": str(run_dir)}, k) for k in TERMS}  # (agent steps, values) per term

    def last_at(steps: list[int], values: list[float], x: int) -> float | None:
        return next((v for s, v in zip(reversed(steps), reversed(values)) if s * ACTION_REPEAT <= x), None)

    out = []
    for x in frames:
        at = {k.removeprefix("train/"): last_at(*series[k], x) for k in TERMS}
        out.append(at if any(v is not None for v in at.values()) else {})
    return out


def read_progress(run_dir: Path) -> dict:
    """Eval points on the official axis (env frames) and the counters of a finished or unfinished run."""
    from omegaconf import OmegaConf

    from torchrl_dreamerxp.training.checkpoint import latest_checkpoint, read_counters

    points = []
    if (run_dir / "eval.csv").exists():
        with open(run_dir / "eval.csv") as f:
            for row in csv.DictReader(f):  # runs log env frames; older eval.csv files only agent steps
                frames = row.get("env_frames") or int(float(row["env_step"])) * ACTION_REPEAT
                points.append((int(frames), float(row["eval_return"])))
    counters = {}
    if (run_dir / "done").exists():
        counters = json.loads((run_dir / "done").read_text())
    elif (last := latest_checkpoint(run_dir / "checkpoints")) is not None:  # an unfinished run: its newest checkpoint
        counters = read_counters(last)
    config = OmegaConf.load(run_dir / "config.yaml") if (run_dir / "config.yaml").exists() else None
    return {"env_frames": [x for x, _ in points], "eval_return": [y for _, y in points],
            "terms": terms_at_evals(run_dir, [x for x, _ in points]),
            "model": config.model.name if config else None, "train_ratio": config.train_ratio if config else None,
            "precision": config.get("precision") if config else None,
            "done": (run_dir / "done").exists(), "updates": counters.get("updates"),
            "agent_steps": counters.get("env_steps"), "wall_time_s": counters.get("wall_time_s"),
            "random_return": counters.get("random_return")}


def progress_of(run: dict) -> int:
    """How far a run got: its agent steps, else its last evaluation's frames (0 for nothing)."""
    return run.get("agent_steps") or (run["env_frames"][-1] // ACTION_REPEAT if run.get("env_frames") else 0)


def keep_recorded(current: dict, recorded: dict | None) -> dict:
    """The run as its directory shows it, or the earlier JSON's entry where that got further (never lose a result:
    run directories are not kept with the repository, the JSON is). A record that is not the start of the current
    run (a run of the same seed whose directory was lost, then started again) is kept under ``earlier_runs``."""
    if recorded is None:
        return current
    if progress_of(recorded) > progress_of(current):
        return {**recorded, "from_record": True}
    earlier = recorded.get("earlier_runs", [])
    if recorded["eval_return"] != current["eval_return"][:len(recorded["eval_return"])]:
        earlier = [*earlier, {k: v for k, v in recorded.items() if k not in ("earlier_runs", "from_record")}]
    return {**current, "earlier_runs": earlier} if earlier else current


def official_stats(official: dict, name: str) -> dict[int, dict]:
    """Mean, min and max over the official seeds at every x of the score file."""
    seeds = official["tasks"][name]["seeds"].values()
    by_x: dict[int, list[float]] = {}
    for run in seeds:
        for x, y in zip(run["x"], run["y"]):
            by_x.setdefault(int(x), []).append(y)
    return {x: {"mean": sum(v) / len(v), "min": min(v), "max": max(v), "n": len(v)} for x, v in sorted(by_x.items())}


def value_at(run: dict, x: int) -> float | None:
    """Our evaluation standing for the official point ``x`` (the first within one collection round at or after it)."""
    return next((y for f, y in zip(run["env_frames"], run["eval_return"]) if x <= f < x + ROUND_FRAMES), None)


def compare(ours: dict[str, dict], stats: dict[int, dict]) -> list[dict]:
    """Ours vs official at every official x our seeds have reached."""
    rows = []
    for x, off in stats.items():
        seeds = {s: v for s, r in ours.items() if (v := value_at(r, x)) is not None}
        if not seeds:
            continue
        mean = sum(seeds.values()) / len(seeds)
        rows.append({"env_frames": x, "ours": seeds, "ours_mean": mean, "official_mean": off["mean"],
                     "official_min": off["min"], "official_max": off["max"],
                     "mean_at_least_official_mean": mean >= off["mean"],
                     "every_seed_at_least_official_min": all(v >= off["min"] for v in seeds.values())})
    return rows


def plot(task: str, ours: dict[str, dict], official: dict, name: str, out_png: Path, tag: str = "") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from learning import save_curve_plot

    stats = official_stats(official, name)
    limit = TASKS[task][1]
    xs = [x for x in stats if x <= 2 * limit]
    fig, ax = plt.subplots(figsize=(6.5, 4))
    ax.fill_between(xs, [stats[x]["min"] for x in xs], [stats[x]["max"] for x in xs], color="gray", alpha=0.25,
                    label=f"official DreamerV3, {stats[xs[0]]['n']} seeds (min–max)")
    ax.plot(xs, [stats[x]["mean"] for x in xs], color="black", linewidth=2, label="official mean")
    for i, (seed, run) in enumerate(sorted(ours.items())):
        if run["env_frames"]:
            ax.plot(run["env_frames"], run["eval_return"], color=f"C{i}", marker="o", markersize=3,
                    label=f"ours seed {seed}" + ("" if run["done"] else " (running)")
                    + (" (from the JSON record)" if run.get("from_record") else ""))
        for j, lost in enumerate(run.get("earlier_runs", [])):
            ax.plot(lost["env_frames"], lost["eval_return"], color=f"C{i}", linestyle="--", alpha=0.5, marker="x",
                    markersize=3, label=f"ours seed {seed}, an earlier run (directory lost)" if j == 0 else None)
    variant = f" [{tag}]" if tag else ""
    ax.axvline(limit, color="green", linestyle=":", linewidth=1, label=f"our budget {limit // 1000}k frames")
    save_curve_plot(fig, ax, "env frames (agent steps × action repeat 2, the official axis)",
                    f"DMC proprio {task}: ours (dmc_proprio defaults{variant}) vs official", out_png, legend_size=7)


def read_record(out_json: Path, overrides: list[str]) -> dict:
    """The tasks of an earlier report written with the same overrides (``{}`` if none, or other overrides)."""
    if not out_json.exists():
        return {}
    earlier = json.loads(out_json.read_text())
    if earlier.get("overrides", []) != overrides:
        print(f"{out_json}: written with overrides {earlier.get('overrides', [])}, not {overrides}: "
              "its runs are not carried over", flush=True)
        return {}
    return earlier.get("tasks", {})


def report(tasks: list[str], seeds: list[int], runs: Path, out_json: Path, img_dir: Path,
           overrides: list[str] = (), tag: str = "") -> dict:
    official = json.loads(OFFICIAL.read_text())
    overrides = list(overrides)
    recorded = read_record(out_json, overrides)
    result = {"benchmark": "official_curves", "official": official["source"], "x_axis": "env frames",
              "settings": [f"env=dmc_proprio/<task>", *SETTINGS, f"eval.every={EVAL_EVERY_FRAMES // ACTION_REPEAT}"],
              "overrides": overrides, "tag": tag, "tasks": {}}
    # an invocation on a subset (--tasks, --seeds) keeps the recorded tasks and seeds it did not name
    for task in [*tasks, *(t for t in TASKS if t in recorded and t not in tasks)]:
        name = TASKS[task][0]
        record = recorded.get(task, {}).get("ours", {})
        task_seeds = sorted({*seeds, *map(int, record)})
        ours = {str(s): keep_recorded(read_progress(runs / task / f"seed{s}"), record.get(str(s))) for s in task_seeds}
        stats = official_stats(official, name)
        result["tasks"][task] = {"official_name": name, "budget_env_frames": TASKS[task][1], "ours": ours,
                                 "official": {str(x): v for x, v in stats.items() if x <= TASKS[task][1]},
                                 "comparison": compare(ours, stats)}
        plot(task, ours, official, name, img_dir / f"official_{task}{'_' + tag if tag else ''}.png", tag)
    return result


def print_table(result: dict) -> None:
    print(f"{'task':14s} {'frames':>7s} {'ours (per seed)':>22s} {'ours mean':>9s} {'official mean':>13s} {'min':>7s}")
    for task, t in result["tasks"].items():
        for row in t["comparison"]:
            per_seed = ", ".join(f"{v:.0f}" for v in row["ours"].values())
            print(f"{task:14s} {row['env_frames']:7d} {per_seed:>22s} {row['ours_mean']:9.1f} "
                  f"{row['official_mean']:13.1f} {row['official_min']:7.1f}")


def markdown_table(result: dict) -> str:
    """The comparison as the Markdown table of ``docs/learning.md`` (one row per task and official point reached)."""
    lines = ["| task | env frames | ours, per seed | ours mean | official mean (min–max) | mean ≥ official mean "
             "| each seed ≥ official min |", "| --- | --- | --- | --- | --- | --- | --- |"]
    yes_no = {True: "yes", False: "no"}
    for task, t in result["tasks"].items():
        for row in t["comparison"]:
            per_seed = ", ".join(f"{v:.1f} (s{s})" for s, v in sorted(row["ours"].items(), key=lambda kv: int(kv[0])))
            lines.append(f"| {task} | {row['env_frames'] // 1000}k | {per_seed} | {row['ours_mean']:.1f} "
                         f"| {row['official_mean']:.1f} ({row['official_min']:.1f}–{row['official_max']:.1f}) "
                         f"| {yes_no[row['mean_at_least_official_mean']]} "
                         f"| {yes_no[row['every_seed_at_least_official_min']]} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--tasks", nargs="+", choices=sorted(TASKS), default=list(TASKS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--parallel", type=int, default=2, help="runs at once")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run")
    p.add_argument("--tag", default="", help="a variant's name: its own run directories, JSON and plots")
    p.add_argument("--runs", type=Path, default=None, help="default: runs/official_curves[_TAG]")
    p.add_argument("--report-only", action="store_true", help="no training: tables and plots of what exists")
    p.add_argument("--out-json", type=Path, default=None, help="default: benchmarks/results/official_curves[_TAG].json")
    p.add_argument("--img-dir", type=Path, default=ROOT / "docs" / "img")
    p.add_argument("--markdown", action="store_true", help="print the comparison as docs/learning.md's table")
    p.add_argument("overrides", nargs="*", help="extra recipe overrides (they change the comparison: say so)")
    args = p.parse_args(argv)
    suffix = f"_{args.tag}" if args.tag else ""
    if args.overrides and not args.tag:
        p.error("overrides change the comparison: give the variant a --tag, so its files stay apart from the defaults'")
    args.runs = args.runs or ROOT / "runs" / f"official_curves{suffix}"
    args.out_json = args.out_json or ROOT / "benchmarks" / "results" / f"official_curves{suffix}.json"
    start, stopped = time.time(), None
    if not args.report_only:
        # seed-major order: with two runs at a time, every task gets a first seed before any gets a second
        jobs = [(task, seed) for seed in args.seeds for task in args.tasks]
        from learning import STOPPED_EXIT_CODES, RunsStopped

        try:
            with ThreadPoolExecutor(args.parallel) as pool:
                list(pool.map(lambda j: run_task(j[0], j[1], args.runs, args.threads, args.overrides), jobs))
        except RunsStopped as err:  # the report of what exists is still written; the same command resumes
            stopped = err
    result = report(args.tasks, args.seeds, args.runs, args.out_json, args.img_dir, args.overrides, args.tag)
    result["wall_clock_s_this_invocation"] = time.time() - start
    args.out_json.parent.mkdir(parents=True, exist_ok=True)
    args.out_json.write_text(json.dumps(result, indent=1))
    if args.markdown:
        print(markdown_table(result))
    else:
        print_table(result)
    print(f"wrote {args.out_json}")
    if stopped is not None:
        print(stopped, flush=True)
        raise SystemExit(STOPPED_EXIT_CODES[0])  # as a run stopped by SIGTERM


if __name__ == "__main__":
    main()
