"""Smoke test of ``benchmarks/run_throughput.py --quick``: serial and parallel collection runs, JSON and plot."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_run_throughput_quick(tmp_path):
    out, png = tmp_path / "t.json", tmp_path / "t.png"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "run_throughput.py"), "--quick", "--env", "gym/CartPole-v1",
         "--envs", "1", "2", "--regimes", "collection", "--threads", "1", "--out", str(out), "--png", str(png)],
        capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["regimes"]["collection"]["runs"]
    assert [r["envs"] for r in rows] == [1, 2] and png.stat().st_size > 0
    for r in rows:  # the quick budget: 400 env steps, train ratio 1 -> 200·1/1024 updates = 0
        assert r["env_steps"] == 400 and r["updates"] == 0 and r["env_steps_per_s"] > 0
    assert rows[0]["env_steps_speedup"] == 1.0 and rows[1]["env_steps_speedup"] > 0
