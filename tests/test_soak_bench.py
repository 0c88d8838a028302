"""Smoke run of benchmarks/soak.py: it samples the training process's memory and reports the growth."""
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_soak_smoke(tmp_path):
    out, png = tmp_path / "soak.json", tmp_path / "soak.png"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "soak.py"), "--minutes", "0.15", "--every", "0.5",
                           "--out", str(out), "--png", str(png)], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-1000:] + proc.stderr[-1000:]
    result = json.loads(out.read_text())
    rss = [s["rss_mb"] for s in result["samples"]]
    assert len(rss) >= 5 and all(r > 0 for r in rss) and max(rss) > 100  # the first sample may catch the start-up
    assert result["growth_after_warmup"] == (result["rss_at_end_mb"] - result["rss_after_warmup_mb"]) / result["rss_after_warmup_mb"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
