"""Soak test: does a long training run's memory stay flat?

Runs ``recipes/train.py`` on CartPole in a child process for ``--minutes`` and samples the child's
resident memory (``VmRSS`` from ``/proc``) every ``--every`` seconds. The replay buffer is made small
(``replay_size``, 5000 steps by default) so it is full after a few minutes: from then on nothing should
grow. Growth is measured from the end of the warm-up (``--warmup`` fraction of the time, by then the
replay is full) to the end of the run, each as the median RSS of a window of samples, and compared with
the 5% bar. Writes ``benchmarks/results/soak.json`` and ``docs/img/soak.png``.

Usage:
    python benchmarks/soak.py --minutes 30
    python benchmarks/soak.py --minutes 0.5 --out /tmp/soak.json --png /tmp/soak.png   # smoke run
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def rss_mb(pid: int) -> float | None:
    try:
        for line in open(f"/proc/{pid}/status"):
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def env_steps(run_dir: Path) -> int | None:
    """The newest env step the run has logged (metrics.jsonl), for the x axis of the plot."""
    try:
        with open(run_dir / "metrics.jsonl", "rb") as f:
            f.seek(max(0, f.seek(0, 2) - 4096))
            lines = f.read().decode(errors="ignore").splitlines()
        return json.loads(lines[-1])["env_step"] if lines else None
    except (OSError, ValueError, KeyError, IndexError):
        return None


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--minutes", type=float, default=30.0)
    p.add_argument("--every", type=float, default=5.0, help="seconds between RSS samples")
    p.add_argument("--warmup", type=float, default=0.3, help="fraction of the run before growth is measured")
    p.add_argument("--window", type=float, default=0.1, help="fraction of samples in each median window")
    p.add_argument("--replay-size", type=int, default=5000)
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "soak.json")
    p.add_argument("--png", type=Path, default=ROOT / "docs" / "img" / "soak.png")
    p.add_argument("overrides", nargs="*", help="extra recipe overrides")
    args = p.parse_args(argv)

    run_dir = Path(tempfile.mkdtemp(prefix="soak_"))
    cmd = [sys.executable, str(ROOT / "recipes" / "train.py"), "env=gym/CartPole-v1", "model=vector_small",
           "steps=100000000", f"replay_size={args.replay_size}", f"run_dir={run_dir}", "logger.mode=disabled",
           "progress=false", "threads=1", "eval.every=2000", "checkpoint_every=5000", *args.overrides]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OMP_WAIT_POLICY": "PASSIVE"}
    child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    start, samples = time.time(), []
    try:
        while time.time() - start < args.minutes * 60 and child.poll() is None:
            rss = rss_mb(child.pid)
            if rss is not None:
                samples.append({"t_s": round(time.time() - start, 1), "rss_mb": rss, "env_step": env_steps(run_dir)})
            time.sleep(args.every)
    finally:
        crashed = child.poll() is not None
        child.terminate()
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
        shutil.rmtree(run_dir, ignore_errors=True)
    if crashed:
        print(f"the training run stopped early (rc={child.returncode}): {child.stderr.read()[-2000:]}")
        return 1

    n = len(samples)
    w = max(1, int(args.window * n))
    w0 = min(max(int(args.warmup * n), w), n - w) if n > w else 0
    after_warmup = statistics.median(s["rss_mb"] for s in samples[w0: w0 + w])
    at_end = statistics.median(s["rss_mb"] for s in samples[-w:])
    growth = (at_end - after_warmup) / after_warmup
    tail = samples[w0:]
    import numpy as np  # the trend after warm-up: does it keep growing?

    slope = float(np.polyfit([s["t_s"] / 60 for s in tail], [s["rss_mb"] for s in tail], 1)[0]) if len(tail) > 1 else 0.0
    result = {
        "benchmark": "soak",
        "what": "resident memory of a CartPole training run over time (replay full after warm-up)",
        "minutes": args.minutes, "samples": samples, "replay_size": args.replay_size,
        "rss_after_warmup_mb": after_warmup, "rss_at_end_mb": at_end, "growth_after_warmup": growth,
        "slope_mb_per_min_after_warmup": slope,
        "bar": 0.05, "bar_met": growth < 0.05,
        "env_steps_at_end": next((s["env_step"] for s in reversed(samples) if s["env_step"] is not None), None),
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 3.5))
    ax.plot([s["t_s"] / 60 for s in samples], [s["rss_mb"] for s in samples], label="RSS of the training process")
    ax.axvline(samples[w0]["t_s"] / 60, color="gray", linestyle="--", label="end of warm-up")
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MB)")
    ax.set_title(f"soak: growth after warm-up {100 * growth:+.2f}% (bar 5%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    args.png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.png, dpi=100)
    print(f"RSS {after_warmup:.0f} MB after warm-up -> {at_end:.0f} MB at the end: {100 * growth:+.2f}% "
          f"({'meets' if growth < 0.05 else 'misses'} the 5% bar); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
