"""The package installs like one: a non-editable wheel trains from outside the repository."""
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_a_built_wheel_trains_from_any_directory(tmp_path):
    dist, site, cwd, src = tmp_path / "dist", tmp_path / "site", tmp_path / "elsewhere", tmp_path / "src"
    # built from a copy of what the wheel is made of: setuptools writes build/ next to setup.py
    for part in ("torchrl_dreamerxp", "configs", "recipes"):
        shutil.copytree(ROOT / part, src / part, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.py", src / "setup.py")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(dist)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("torchrl_dreamerxp-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site), str(wheel)],
                   check=True, capture_output=True, timeout=300)
    cwd.mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}  # the wheel, not the checkout
    where = subprocess.run([sys.executable, "-c", "import torchrl_dreamerxp as t; print(t.__file__, t.config_dir())"],
                           cwd=cwd, env=env, capture_output=True, text=True, check=True).stdout.split()
    assert all(p.startswith(str(site)) for p in where), where  # the package and its configs come from the wheel
    run = subprocess.run(
        [sys.executable, "-m", "torchrl_dreamerxp.recipes.train", "env=gym/CartPole-v1", "model=tiny", "steps=200",
         "prefill=48", "batch_size=2", "batch_length=8", "train_ratio=16", "frames_per_batch=8", "eval.every=200",
         "eval.episodes=1", "agent.horizon=3", "logger.mode=disabled", "progress=false", "threads=1", "run_dir=run"],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert json.loads((cwd / "run" / "done").read_text())["env_steps"] == 200
    assert sorted(p.name for p in cwd.iterdir()) == ["run"]  # no hydra outputs or logs beside it
    entry_points = next(site.glob("torchrl_dreamerxp-*.dist-info")) / "entry_points.txt"
    assert "dreamerxp-train = torchrl_dreamerxp.recipes.train:main" in entry_points.read_text()
