"""Smoke tests of ``benchmarks/update_speed.py --quick`` and ``benchmarks/profile_update.py``."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
import update_speed  # noqa: E402


def test_update_speed_quick(tmp_path):
    out = tmp_path / "update_speed.json"
    proc = subprocess.run(
        # two workload subprocesses at once (a smoke run: the timings need not be clean)
        [sys.executable, str(ROOT / "benchmarks" / "update_speed.py"), "--quick", "--jobs", "2", "--out", str(out)],
        capture_output=True, text=True, cwd=ROOT, timeout=600,  # 7 subprocesses; slow on a loaded machine
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    rows = result["workloads"]
    assert not [r for r in rows if "error" in r], [r["error"] for r in rows if "error" in r]
    assert {r["impl"] for r in rows} == {"ours", "torchrl", "ours_intrinsic", "ours_compiled", "ours_bf16"}
    assert result["ratios"]["tiny/vector/compiled"]["variant_over_eager_median"] > 0
    bf16 = result["ratios"]["tiny/vector/bf16/over_float32"]  # the bf16 row over its float32 twin, same run
    assert bf16["float32_row"] == "ours-tiny-vector" and bf16["bf16_over_float32_median"] > 0
    assert next(r for r in rows if r["impl"] == "ours_bf16")["precision"] == "bfloat16"
    xp = next(r for r in rows if r["impl"] == "ours_intrinsic")
    assert 0 < xp["ensemble_share_median"] < 1 and xp["params_ensemble"] > 0
    for r in rows:
        for key in ("sec_per_update_median", "sec_per_update_min", "peak_rss_mb"):
            assert math.isfinite(r[key]) and r[key] > 0, (r["name"], key, r[key])
        assert r["params"] > 0 and (r["batch"], r["seq"], r["horizon"]) == (2, 8, 3)
    ratio = result["ratios"]["tiny/vector"]
    assert ratio["torchrl_over_ours_median"] > 0
    assert ratio["params_torchrl"] == ratio["params_ours"]  # sizes matched exactly on the vector row
    assert result["machine"]["torch"] and result["command"] and result["jobs"] == 2
    assert [r["name"] for r in rows] == list(update_speed.QUICK)  # in the catalogue's order, whatever finished first


def test_timed_workloads_run_one_at_a_time(capsys):
    # concurrent workloads distort each other's timings: only a smoke run may ask for them
    with pytest.raises(SystemExit):
        update_speed.main(["--jobs", "2", "--workloads", "ours-tiny-vector"])
    assert "--quick only" in capsys.readouterr().err


def test_profile_update_smoke(tmp_path):
    out = tmp_path / "profile.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "profile_update.py"), "--preset", "tiny", "--batch",
                           "2", "--seq", "8", "--horizon", "3", "--iters", "1", "--threads", "1", "--out", str(out)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(out.read_text())
    phases = result["phases"]
    assert {"world model loss", "imagination", "actor loss", "critic loss", "optimizer step"} <= set(phases)
    assert sum(p["sec"] for p in phases.values()) == pytest.approx(result["sec_per_update_median"], rel=1e-6)
    assert result["top_ops"] and all(o["calls"] > 0 for o in result["top_ops"])
