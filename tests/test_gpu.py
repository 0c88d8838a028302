"""CUDA checks, run on a lent GPU machine only: ``python -m pytest -m gpu`` (skipped everywhere else)."""
import json
from pathlib import Path

import pytest
import torch
from tensordict import TensorDict

from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
from torchrl_dreamerxp.training import Learner

pytestmark = [pytest.mark.gpu,
              pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]

ROOT = Path(__file__).resolve().parents[1]


def make_learner(device, precision="float32"):
    torch.manual_seed(0)
    wm = WorldModel(action_dim=2, obs_dim=5, deter=64, hidden=32, classes=8, stoch=8, units=32, blocks=4)
    feat = wm.rssm.feature_dim()
    learner = Learner(wm, Actor(feat, 2, False, units=32, layers=2), TwoHotHead(feat, 32, 2), horizon=5,
                      warmup=0, precision=precision)
    return learner.to(device)


def make_batch(device, B=4, T=12):
    g = torch.Generator().manual_seed(1)
    batch = TensorDict({
        "observation": torch.randn(B, T, 5, generator=g),
        "prev_action": torch.rand(B, T, 2, generator=g) * 2 - 1,
        "reward": torch.randn(B, T, generator=g),
        "is_first": torch.zeros(B, T, dtype=torch.bool),
        "is_terminal": torch.zeros(B, T, dtype=torch.bool),
        "is_last": torch.zeros(B, T, dtype=torch.bool),
        "deter": torch.zeros(B, T, 64),
        "stoch": torch.zeros(B, T, 8, 8),
    }, [B, T])
    batch["is_first"][:, 0] = True
    return batch.to(device)


def test_update_on_cuda_trains_every_parameter_and_stays_on_the_device():
    learner = make_learner("cuda")
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    for _ in range(3):
        out, feedback = learner.update(make_batch("cuda"))
        assert out["skipped"] == 0.0 and all(torch.isfinite(torch.tensor(v)) for v in out.values())
    moved = [n for n, p in learner.named_parameters() if not torch.equal(p, before[n])]
    # every trained parameter moved (the slow critic follows by EMA, which also moves it)
    assert len(moved) == len(before)
    assert all(p.device.type == "cuda" for p in learner.parameters())
    assert {k for k, v in feedback.items() if v.device.type != "cuda"} == set()
    # the same metric names as on the CPU
    cpu_out, _ = make_learner("cpu").update(make_batch("cpu"))
    assert set(out) == set(cpu_out)


def test_bfloat16_autocast_gives_the_float32_losses_within_bf16_error():
    batch = make_batch("cuda")
    terms = {}
    for precision in ("float32", "bfloat16"):
        learner = make_learner("cuda", precision)
        torch.cuda.manual_seed(3)  # same uniform draws for the samples of both runs
        t, _, _ = learner.losses(batch)
        terms[precision] = {k: float(v.detach()) for k, v in t.items()}
    assert terms["float32"].keys() == terms["bfloat16"].keys()
    for key, ref in terms["float32"].items():
        assert terms["bfloat16"][key] == pytest.approx(ref, rel=0.05, abs=0.02), key


def test_nonfinite_batch_on_cuda_skips_and_changes_nothing():
    learner = make_learner("cuda")
    batch = make_batch("cuda")
    batch["reward"][0, 3] = float("nan")  # a corrupt reward: the reward loss turns non-finite
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    assert learner.update(batch)[0]["skipped"] == 1.0
    assert all(torch.equal(p, before[n]) for n, p in learner.named_parameters())


def load_recipe():
    from torchrl_dreamerxp.recipes import train

    return train


@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_recipe_trains_on_cuda_and_resumes(tmp_path, precision):
    from hydra import compose, initialize_config_dir

    recipe = load_recipe()
    fast = ["model=tiny", "batch_size=2", "batch_length=8", "train_ratio=16", "frames_per_batch=8", "prefill=48",
            "logger.mode=disabled", "progress=false", "eval.episodes=1", "agent.horizon=3", "device=cuda",
            f"precision={precision}", "env=gym/CartPole-v1", "eval.every=80", "checkpoint_every=80",
            f"run_dir={tmp_path}"]
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        run_dir = recipe.run(compose("train", overrides=[*fast, "steps=160"]))
    counters = json.loads((run_dir / "done").read_text())
    assert counters["env_steps"] == 160 and counters["updates"] == 112  # as the CPU run in test_train_recipe
    (run_dir / "done").unlink()
    with initialize_config_dir(config_dir=str(ROOT / "configs"), version_base="1.3"):
        recipe.run(compose("train", overrides=[*fast, "steps=240", "resume=true"]))
    assert json.loads((run_dir / "done").read_text())["updates"] == (240 - 48) * 16 // 16

