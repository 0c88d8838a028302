"""Smoke test of ``benchmarks/run_throughput.py --quick``: serial and parallel collection runs, JSON and plot."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run_quick(script: str, out: Path, png: Path, *args: str) -> dict:
    """``benchmarks/<script> --quick`` on CartPole; its JSON."""
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / script), "--quick", "--env", "gym/CartPole-v1",
                           *args, "--out", str(out), "--png", str(png)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_run_throughput_quick(tmp_path):
    out, png = tmp_path / "t.json", tmp_path / "t.png"
    result = run_quick("run_throughput.py", out, png, "--envs", "1", "2", "--regimes", "collection", "--threads", "1")
    rows = result["regimes"]["collection"]["runs"]
    assert [r["envs"] for r in rows] == [1, 2] and png.stat().st_size > 0
    for r in rows:  # the quick budget: 400 env steps, train ratio 1 -> 200·1/1024 updates = 0
        assert r["env_steps"] == 400 and r["updates"] == 0 and r["env_steps_per_s"] > 0
    assert rows[0]["env_steps_speedup"] == 1.0 and rows[1]["env_steps_speedup"] > 0


def test_scale_quick(tmp_path):
    # benchmarks/scale.py's learner sweep of 1 and 2 torchrun processes. Its env-worker and Ray sweeps run the
    # recipe through the same run_case with envs=N or collector.backend=ray, which test_run_throughput_quick
    # and tests/test_ray.py run; they are left out here for the suite's time
    out, png = tmp_path / "s.json", tmp_path / "s.png"
    result = run_quick("scale.py", out, png, "--sweeps", "learners", "--learners", "1", "2", "--threads", "2")
    learners = result["learners"]["runs"]
    assert [r["learners"] for r in learners] == [1, 2] and [r["threads_per_learner"] for r in learners] == [2, 1]
    # quick official regime: 264 env steps round up to 17 rounds of 16 = 272; (272 - 200) · 256 / (16·64) = 18
    # updates, the same with 1 or 2 learner processes (the batch is split, not multiplied)
    assert [r["env_steps"] for r in learners] == [272, 272] and [r["updates"] for r in learners] == [18, 18]
    assert learners[0]["speedup"] == 1.0
    assert "env_workers" not in result and "ray_workers" not in result and png.stat().st_size > 0
