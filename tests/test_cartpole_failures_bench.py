"""benchmarks/cartpole_failures.py: the end classification and a run over a checkpoint (untrained, tiny)."""
import json
import subprocess
import sys
from pathlib import Path

import torch
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import cartpole_failures  # noqa: E402


def test_end_kind_reads_the_gymnasium_thresholds():
    assert cartpole_failures.end_kind(2.41, 0.0, True) == "cart_out"
    assert cartpole_failures.end_kind(-2.41, 0.3, True) == "cart_out"  # both: the cart is checked first
    assert cartpole_failures.end_kind(0.5, -0.21, True) == "pole_fell"  # 12° = 0.2094 rad
    assert cartpole_failures.end_kind(0.5, 0.20, True) == "time_limit"  # neither threshold crossed
    assert cartpole_failures.end_kind(3.0, 0.5, False) == "time_limit"  # truncated, not terminated


def test_counts_every_episode_of_every_checkpoint(tmp_path):
    from torchrl_dreamerxp.envs import make_env
    from torchrl_dreamerxp.training.agent import build_networks, env_shapes

    model = OmegaConf.load(ROOT / "configs" / "model" / "tiny.yaml")
    run = tmp_path / "run"
    run.mkdir()
    OmegaConf.save(OmegaConf.create({"env": "gym/CartPole-v1", "model": model}), run / "config.yaml")
    world_model, actor, _ = build_networks(model, env_shapes(make_env("gym/CartPole-v1")))
    state = {**{f"world_model.{k}": v for k, v in world_model.state_dict().items()},
             **{f"actor.{k}": v for k, v in actor.state_dict().items()}}
    for step in ("step_000000100", "step_000000200"):
        (run / "checkpoints" / step).mkdir(parents=True)
        torch.save({"learner": state}, run / "checkpoints" / step / "state.pt")
        (run / "checkpoints" / step / "counters.json").write_text("{}")
    out = tmp_path / "ends.json"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "cartpole_failures.py"), str(run), "--episodes", "2",
                    "--out", str(out)], check=True, cwd=ROOT, capture_output=True)
    rows = json.loads(out.read_text())["rows"]
    assert [r["checkpoint"] for r in rows] == ["step_000000100", "step_000000200"]
    for r in rows:
        assert sum(r["ends"].values()) == 2 and len(r["lengths"]) == 2
        # an untrained policy drops the pole within a few dozen steps
        assert r["ends"]["time_limit"] == 0 and max(r["lengths"]) < 500
