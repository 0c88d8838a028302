"""precision="bfloat16" against float32 on the same batch: losses, gradients, and the compiled bf16 update.

Tolerances (stated in docs/benchmarks.md): every loss term within 2% (or 0.02 absolute) of float32, and the
gradient of every network pointing the same way (cosine similarity at least 0.999); a compiled bf16 update
equals the eager bf16 one within 2% per term and cosine 0.999.
"""
import json
import sys
from pathlib import Path

import pytest
import torch
from omegaconf import OmegaConf
from tensordict import TensorDict

from torchrl_dreamerxp.modules.layers import RMSNorm
from torchrl_dreamerxp.training import Learner
from torchrl_dreamerxp.training.agent import EnvShapes, build_learner, build_networks, compile_networks

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))
from precision_drift import terms_and_grads  # noqa: E402  (the benchmark's measurement, the same here)

PIXELS = (3, 64, 64)


def make_learner(preset: str, pixels: bool, precision: str, cast: str = "once"):
    torch.manual_seed(0)  # equal initial weights for every precision
    cfg = OmegaConf.load(ROOT / "configs" / "train.yaml")
    cfg.model = OmegaConf.load(ROOT / "configs" / "model" / f"{preset}.yaml")
    cfg.precision = precision
    cfg.agent.horizon, cfg.agent.warmup = 5, 0
    shapes = EnvShapes(obs_dim=None if pixels else 7, pixel_shape=PIXELS if pixels else None, action_dim=3,
                       discrete=pixels)
    learner = build_learner(cfg, *build_networks(cfg.model, shapes))
    learner.cast = cast
    return learner


def make_batch(learner, pixels: bool, B=4, T=17) -> TensorDict:
    g = torch.Generator().manual_seed(1)
    rssm = learner.world_model.rssm
    obs = ({"pixels": torch.randint(0, 256, (B, T, *PIXELS), dtype=torch.uint8, generator=g)} if pixels
           else {"observation": 3 * torch.randn(B, T, 7, generator=g)})
    batch = TensorDict({
        **obs,
        "prev_action": torch.eye(3)[torch.randint(3, (B, T), generator=g)] if pixels else torch.rand(B, T, 3, generator=g) * 2 - 1,
        "reward": torch.randn(B, T, generator=g),
        "is_first": torch.zeros(B, T, dtype=torch.bool),
        "is_terminal": torch.zeros(B, T, dtype=torch.bool),
        "is_last": torch.zeros(B, T, dtype=torch.bool),
        "deter": torch.zeros(B, T, rssm.deter),
        "stoch": torch.zeros(B, T, rssm.stoch, rssm.classes),
    }, [B, T])
    batch["is_first"][:, :2] = True
    return batch


def losses_and_grads(learner, batch):
    """Loss terms and the gradient of their sum per network (flattened), from the same random draws."""
    terms, grads = terms_and_grads(learner, batch, draw_seed=2)
    # bf16 is a compute dtype: the parameters (and so their gradients and the optimizer state) stay float32
    assert all(p.dtype == torch.float32 for p in learner.parameters())
    return terms, grads


def assert_close_terms(got: dict, ref: dict, rel: float, abs_: float):
    assert got.keys() == ref.keys() and len(ref) >= 7
    for key, value in ref.items():
        assert got[key] == pytest.approx(value, rel=rel, abs=abs_), (key, got[key], value)


def assert_same_direction(got: dict, ref: dict, bound: float):
    for name in ref:
        assert ref[name].norm() > 0, name
        cos = torch.nn.functional.cosine_similarity(got[name], ref[name], dim=0)
        assert cos >= bound, (name, float(cos))


@pytest.mark.parametrize("preset,pixels", [("vector_small", False), ("tiny", True)], ids=["vector", "pixels"])
def test_bfloat16_losses_and_gradients_match_float32(preset, pixels):
    ref_learner = make_learner(preset, pixels, "float32")
    batch = make_batch(ref_learner, pixels)
    ref_terms, ref_grads = losses_and_grads(ref_learner, batch)
    learner = make_learner(preset, pixels, "bfloat16")
    # the matrix products really run in bfloat16: a hidden layer's output dtype, seen by a hook
    seen = []
    learner.world_model.rssm.prior_net[0].register_forward_hook(lambda m, i, o: seen.append(o.dtype))
    terms, grads = losses_and_grads(learner, batch)
    assert seen and set(seen) == {torch.bfloat16}
    assert all(p.dtype == torch.float32 for p in learner.parameters())  # the weights stay float32
    assert_close_terms(terms, ref_terms, rel=0.02, abs_=0.02)
    assert_same_direction(grads, ref_grads, 0.999)


def test_autocast_cast_gives_the_same_losses_as_the_cast_once_path():
    batch = make_batch(make_learner("vector_small", False, "float32"), False)
    once_terms, once_grads = losses_and_grads(make_learner("vector_small", False, "bfloat16", "once"), batch)
    auto_terms, auto_grads = losses_and_grads(make_learner("vector_small", False, "bfloat16", "autocast"), batch)
    assert_close_terms(auto_terms, once_terms, rel=0.02, abs_=0.02)
    assert_same_direction(auto_grads, once_grads, 0.999)


def test_compiled_bfloat16_update_equals_the_eager_bfloat16_update():
    import torch._inductor.config as inductor_config

    learner = make_learner("tiny", False, "bfloat16")
    batch = make_batch(learner, False)
    norm_state = {k: v.clone() for k, v in learner.actor_loss.return_norm.state_dict().items()}
    eager_terms, eager_grads = losses_and_grads(learner, batch)
    learner.actor_loss.return_norm.load_state_dict(norm_state)
    with inductor_config.patch(fallback_random=True):  # the same random draws as eager
        compile_networks(learner.world_model, learner.actor, learner.critic, dynamic=False)
        compiled_terms, compiled_grads = losses_and_grads(learner, batch)
    assert_close_terms(compiled_terms, eager_terms, rel=0.02, abs_=0.02)
    assert_same_direction(compiled_grads, eager_grads, 0.999)


def test_bfloat16_update_steps_float32_parameters():
    learner = make_learner("tiny", False, "bfloat16")
    before = {n: p.detach().clone() for n, p in learner.named_parameters()}
    out, feedback = learner.update(make_batch(learner, False))
    assert out["skipped"] == 0.0
    moved = [n for n, p in learner.named_parameters() if not torch.equal(p, before[n])]
    assert moved and all(p.dtype == torch.float32 for p in learner.parameters())
    assert all(v.dtype == torch.float32 for v in feedback.values())  # back into the replay


def test_bfloat16_norms_compute_in_float32_with_scales_that_are_not_cast():
    # the official norm computes in float32: a scale bf16 cannot hold (1 + 2^-10 rounds to 1.0 there) counts
    batch = make_batch(make_learner("tiny", False, "float32"), False)
    learner = make_learner("tiny", False, "bfloat16")
    exact, _ = losses_and_grads(learner, batch)
    norms = [m for m in learner.modules() if isinstance(m, RMSNorm)]
    assert norms and all(torch.equal(m.weight, torch.ones_like(m.weight)) for m in norms)
    assert len(norms) == sum(isinstance(m, torch.nn.RMSNorm) for m in learner.modules())  # no plain nn.RMSNorm
    with torch.no_grad():
        for m in norms:
            m.weight.fill_(1 + 2**-10)
    assert torch.tensor(1 + 2**-10).bfloat16().item() == 1.0
    nudged, _ = losses_and_grads(learner, batch)
    assert nudged["loss_model_reconstruction"] != exact["loss_model_reconstruction"]


def test_norms_compute_float64_inputs_in_float64():
    # "in float32" is a floor for low-precision inputs, not a cast down of a float64 check
    x = torch.randn(3, 4, dtype=torch.float64)
    norm = RMSNorm(4, eps=1e-4).double()
    assert torch.allclose(norm(x), x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-4), rtol=0, atol=1e-12)


def test_the_reward_ensemble_members_normalize_in_float32_under_bfloat16_autocast():
    # the learner trains and scores the ensemble under bf16 autocast; its members' norms, written inline over
    # stacked weights, must see float32 as every RMSNorm does (the baddbmm before them returns bf16)
    from torch.overrides import TorchFunctionMode

    from torchrl_dreamerxp.modules.reward_ensemble import EnsembleMLP

    class RecordNorms(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            if func is torch.rsqrt:
                seen.append(args[0].dtype)
            return func(*args, **(kwargs or {}))

    mlp, seen = EnsembleMLP(members=3, in_features=6, units=8, layers=3, out=2), []
    with torch.autocast("cpu", dtype=torch.bfloat16), RecordNorms():
        out = mlp(torch.randn(5, 6))
    assert out.dtype == torch.bfloat16 and seen == [torch.float32] * 3


def test_precision_drift_benchmark_on_a_trained_run(tmp_path, run_config):
    import precision_drift

    from torchrl_dreamerxp.recipes import train as train_recipe

    run_dir = train_recipe.run(run_config(tmp_path / "run", "steps=64", "checkpoint_every=64"))
    out = tmp_path / "drift.json"
    assert precision_drift.main(["--run-dir", str(run_dir), "--batches", "2", "--out", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["checkpoint"] == "step_000000064" and len(result["batches"]) == 2
    for key in ("grad_cosine_bf16_vs_f32", "grad_cosine_f32_other_draws", "bf16_error_pairwise_cosine_mean"):
        assert set(result["median"][key]) == {"world_model", "actor", "critic"}
        assert all(-1.0 <= v <= 1.0 for v in result["median"][key].values()), (key, result["median"][key])
    assert set(result["median"]["term_rel_diff"]) == set(result["batches"][0]["terms_float32"])


def test_unknown_cast_is_refused():
    learner = make_learner("tiny", False, "float32")
    with pytest.raises(ValueError, match="cast must be 'once' or 'autocast'"):
        Learner(learner.world_model, learner.actor, learner.critic, precision="bfloat16", cast="sometimes")
