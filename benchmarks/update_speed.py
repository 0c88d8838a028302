"""Seconds per full DreamerV3 update: ``torchrl_dreamerxp.training.Learner`` against TorchRL's own DreamerV3.

One update = world model loss on a replayed batch ``[B, T]`` + imagination of ``horizon`` steps from
every posterior state + actor loss + critic loss (imagined and replay returns) + backward + one
optimizer step + slow critic update, float32 on CPU.

- ours: :class:`torchrl_dreamerxp.training.Learner` built as ``recipes/train.py`` builds it
  (``configs/model/<preset>.yaml``, ``configs/train.yaml`` agent settings); batch ``[B, T + 1]``
  (one replay-context step), timed call ``learner.update(batch)``.
- torchrl: TorchRL 0.14.1's DreamerV3 recipe (``sota-implementations/dreamer_v3/train.py``, shipped
  in site-packages): its ``_build_learner`` (``DreamerV3ModelLoss`` + ``DreamerV3ActorLoss`` imagining
  in a ``DreamerEnv`` + ``DreamerV3ValueLoss`` + ``DreamerV3Optimizer`` + ``SoftUpdate``) and its
  ``_make_learner_update`` (``DreamerV3Loss`` + ``DreamerV3OptimizationStepper``, eager on CPU);
  batch ``[B, T]`` transitions, timed call ``stepper.step(None, sample)`` as its training loop does.
  Its network sizes are mapped from the same preset (see ``torchrl_config``; the parameter counts
  of the vector rows are equal). The recipe has one width ``hidden_dim`` for the RSSM hidden layers
  and every MLP; where a preset's ``hidden`` differs from ``units`` (``vector_small``) the prior and
  posterior are rebuilt at the RSSM width (``split_rssm_width``).

Workloads (rows): vector observation of 24 + continuous 6-dim action (DMC walker-sized; presets
size12m and vector_small) and 64×64×3 pixels + 6 discrete actions (size12m). Every workload runs in
its own subprocess (``--one NAME``) so threads, allocator state and the peak RSS
(``ru_maxrss``) belong to it. Warm-up updates are excluded; median and min of ``--iters`` updates.

Usage:
    python benchmarks/update_speed.py [--iters 5] [--warmup 2] [--threads 2]
    python benchmarks/update_speed.py --quick        # tiny sizes, 2×8 batch, horizon 3: smoke test
    python benchmarks/update_speed.py --workloads ours-size12m-vector torchrl-size12m-vector
    python benchmarks/update_speed.py --tune-malloc ...   # glibc malloc tuned in every workload

Writes ``benchmarks/results/update_speed.json`` (``--out``).
"""
from __future__ import annotations

import argparse
import datetime
import importlib.util
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "update_speed.json"
RESULT_MARK = "UPDATE_SPEED_RESULT "
sys.path.insert(0, str(ROOT))

OBS_DIM, ACTION_DIM = 24, 6          # DMC walker: 24 proprio features, 6 continuous actions
PIXEL_SHAPE, PIXEL_ACTIONS = (3, 64, 64), 6

# name -> (impl, preset, observation kind)
WORKLOADS = {
    "ours-size12m-vector": ("ours", "size12m", "vector"),
    "torchrl-size12m-vector": ("torchrl", "size12m", "vector"),
    "ours-vector_small-vector": ("ours", "vector_small", "vector"),
    "torchrl-vector_small-vector": ("torchrl", "vector_small", "vector"),
    "ours-size12m-pixels": ("ours", "size12m", "pixels"),
    # XP latent reward disagreement on: the ensemble's share of the update (K = 5, latent mode)
    "ours_intrinsic-size12m-vector": ("ours_intrinsic", "size12m", "vector"),
    "torchrl-size12m-pixels": ("torchrl", "size12m", "pixels"),
    # compile=true: torch.compile of the RSSM steps and the MLPs (the first warm-up update includes the compilation)
    "ours_compiled-size12m-vector": ("ours_compiled", "size12m", "vector"),
    "ours_compiled-vector_small-vector": ("ours_compiled", "vector_small", "vector"),
    # precision=bfloat16: weights cast to bf16 once per update, forward under autocast (float32 islands)
    "ours_bf16-size12m-vector": ("ours_bf16", "size12m", "vector"),
    "ours_compiled_bf16-size12m-vector": ("ours_compiled_bf16", "size12m", "vector"),
    # the alternative: float32 weights cast by autocast at every use
    "ours_autocast_bf16-size12m-vector": ("ours_autocast_bf16", "size12m", "vector"),
    "ours_compiled_autocast_bf16-size12m-vector": ("ours_compiled_autocast_bf16", "size12m", "vector"),
    "ours_intrinsic_compiled-size12m-vector": ("ours_intrinsic_compiled", "size12m", "vector"),
    "ours_intrinsic_bf16-size12m-vector": ("ours_intrinsic_bf16", "size12m", "vector"),
    "ours_intrinsic_compiled_bf16-size12m-vector": ("ours_intrinsic_compiled_bf16", "size12m", "vector"),
    "ours_bf16-vector_small-vector": ("ours_bf16", "vector_small", "vector"),
    "ours_compiled_bf16-vector_small-vector": ("ours_compiled_bf16", "vector_small", "vector"),
    "ours_bf16-size12m-pixels": ("ours_bf16", "size12m", "pixels"),
    "ours_compiled-size12m-pixels": ("ours_compiled", "size12m", "pixels"),
    "ours_compiled_bf16-size12m-pixels": ("ours_compiled_bf16", "size12m", "pixels"),
}
# --device cuda (a lent GPU): the official sizes, float32 and bf16 autocast, eager, compiled RSSM steps
# (inductor) and compiled steps replayed as CUDA graphs (mode="reduce-overhead")
GPU_WORKLOADS = {
    f"{impl}-{preset}-{kind}": (impl, preset, kind)
    for preset in ("size12m", "size200m") for kind in ("vector", "pixels")
    for impl in ("ours", "ours_bf16", "ours_compiled", "ours_compiled_bf16", "ours_cudagraphs", "torchrl")
}
QUICK = {
    "ours-tiny-vector": ("ours", "tiny", "vector"),
    "torchrl-tiny-vector": ("torchrl", "tiny", "vector"),
    "ours-tiny-pixels": ("ours", "tiny", "pixels"),
    "ours_intrinsic-tiny-vector": ("ours_intrinsic", "tiny", "vector"),
    "torchrl-tiny-pixels": ("torchrl", "tiny", "pixels"),
    "ours_compiled-tiny-vector": ("ours_compiled", "tiny", "vector"),
    "ours_bf16-tiny-vector": ("ours_bf16", "tiny", "vector"),
}


def tune_glibc_malloc() -> bool:
    """Serve allocations up to 32 MiB from the heap and keep freed heap mapped (``mallopt``), so an update's
    large temporaries are reused instead of being mmap'ed, zeroed and unmapped each time. ``--tune-malloc``
    applies it to every workload: it speeds TorchRL's update far more than ours (see docs/benchmarks.md)."""
    import ctypes
    import ctypes.util

    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_top_pad, m_mmap_threshold = -1, -2, -3  # malloc.h
    return all(mallopt(param, value) == 1 for param, value in (
        (m_mmap_threshold, 32 << 20), (m_trim_threshold, 2**31 - 1), (m_top_pad, 512 << 20)))


def rss_mb() -> float:
    """Peak resident set size of this process so far (Linux ``ru_maxrss`` is in KiB)."""
    scale = 1024 * 1024 if sys.platform == "darwin" else 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / scale


def model_cfg(preset: str):
    from omegaconf import OmegaConf

    return OmegaConf.load(ROOT / "configs" / "model" / f"{preset}.yaml")


def count(params) -> int:
    return sum(p.numel() for p in {id(p): p for p in params}.values())


# ---------------------------------------------------------------------------------------------
# ours
# ---------------------------------------------------------------------------------------------
def timed(fn, totals: dict, key: str):
    """``fn``, adding its wall time to ``totals[key]`` at every call (CPU ops are synchronous)."""
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            totals[key] = totals.get(key, 0.0) + time.perf_counter() - t
    return wrapper


def build_ours(preset: str, kind: str, batch: int, seq: int, horizon: int, intrinsic: bool = False,
               compiled: bool = False, device: str = "cpu", precision: str = "float32", cudagraphs: bool = False,
               cast: str = "once"):
    """``intrinsic=True`` adds the XP reward ensemble as ``xp=intrinsic`` configures it and times its two
    parts inside each update: scoring the imagined trajectory (the transform) and its own training step.
    ``compiled=True`` compiles the RSSM steps and the MLPs as ``compile=true`` does in the recipe; ``cudagraphs=True``
    compiles them with ``mode="reduce-overhead"`` (each step replayed as a CUDA graph).
    ``precision="bfloat16"``: the learner's bf16 path (``precision=bfloat16`` in the recipe), its weights cast
    ``cast="once"`` per update or by autocast at every use (``cast="autocast"``)."""
    learner, data, params, sizes = build_learner(preset, kind, batch, seq, horizon, intrinsic, precision)
    learner.cast = cast
    learner.to(device)
    data = data.to(device)
    if cudagraphs:
        learner.world_model.rssm.compile_steps(dynamic=False, mode="reduce-overhead")
    elif compiled:  # as compile=true in the recipe
        from torchrl_dreamerxp.training.agent import compile_networks

        compile_networks(learner.world_model, learner.actor, learner.critic, learner.ensemble, dynamic=False)
    if not intrinsic:
        return (lambda: learner.update(data)), params, sizes
    probe = {"ensemble_s": 0.0}
    learner.reward_transform.forward = timed(learner.reward_transform.forward, probe, "ensemble_s")
    learner.update_ensemble = timed(learner.update_ensemble, probe, "ensemble_s")

    def update():
        probe["ensemble_s"] = 0.0
        learner.update(data)
        return probe["ensemble_s"]

    return update, params, sizes


def build_learner(preset: str, kind: str, batch: int, seq: int, horizon: int, intrinsic: bool = False,
                  precision: str = "float32"):
    """The ``Learner`` as ``recipes/train.py`` builds it for a preset, a replay batch ``[B, T+1]`` for it, its
    parameter counts and sizes."""
    import torch
    from omegaconf import OmegaConf
    from tensordict import TensorDict

    from torchrl_dreamerxp.training.agent import EnvShapes, build_networks
    from torchrl_dreamerxp.training.agent import build_learner as learner_from_config

    m = model_cfg(preset)
    train = OmegaConf.load(ROOT / "configs" / "train.yaml")
    train.model = m  # agent settings may interpolate ${model.*}
    context = 1
    if kind == "vector":
        shapes = EnvShapes(obs_dim=OBS_DIM, pixel_shape=None, action_dim=ACTION_DIM, discrete=False)
    else:
        shapes = EnvShapes(obs_dim=None, pixel_shape=PIXEL_SHAPE, action_dim=PIXEL_ACTIONS, discrete=True)
    world_model, actor, critic = build_networks(m, shapes)
    ensemble = transform = None
    if intrinsic:
        from torchrl_dreamerxp.training.agent import build_intrinsic

        xp = OmegaConf.load(ROOT / "configs" / "xp" / "intrinsic.yaml")
        train.xp = xp
        ensemble, transform = build_intrinsic(train.xp, world_model, shapes)
    train.agent.horizon, train.replay_context, train.precision = horizon, context, precision
    learner = learner_from_config(train, world_model, actor, critic, ensemble, transform)  # as recipes/train.py
    B, T = batch, seq + context
    if kind == "vector":
        obs = {"observation": torch.randn(B, T, OBS_DIM)}
        action = torch.rand(B, T, ACTION_DIM) * 2 - 1
    else:
        obs = {"pixels": torch.randint(0, 256, (B, T, *PIXEL_SHAPE), dtype=torch.uint8)}
        action = torch.eye(PIXEL_ACTIONS)[torch.randint(PIXEL_ACTIONS, (B, T))]
    rssm = world_model.rssm
    data = TensorDict(
        {
            **obs,
            "prev_action": action,
            "reward": torch.randn(B, T),
            "is_first": torch.zeros(B, T, dtype=torch.bool),
            "is_terminal": torch.zeros(B, T, dtype=torch.bool),
            "is_last": torch.zeros(B, T, dtype=torch.bool),
            "deter": torch.zeros(B, T, rssm.deter),
            "stoch": torch.zeros(B, T, rssm.stoch, rssm.classes),
        },
        [B, T],
    )
    params = {
        "params": count(p for g in learner.optimizer.param_groups for p in g["params"]),
        "params_world_model": count(world_model.parameters()),
        "params_actor": count(actor.parameters()),
        "params_critic": count(critic.parameters()),
    }
    sizes = {k: m[k] for k in ("deter", "hidden", "stoch", "classes", "blocks", "units", "depth", "enc_layers",
                               "dec_layers", "actor_layers", "critic_layers")}
    sizes["strided_cnn"] = bool(m.get("strided_cnn", False))
    if intrinsic:
        params["params_ensemble"] = count(ensemble.parameters())
    return learner, data, params, sizes


# ---------------------------------------------------------------------------------------------
# TorchRL's DreamerV3 recipe
# ---------------------------------------------------------------------------------------------
def recipe_dir() -> Path:
    import torchrl

    return Path(torchrl.__file__).resolve().parents[1] / "sota-implementations" / "dreamer_v3"


def load_recipe():
    """TorchRL's ``sota-implementations/dreamer_v3/train.py`` as a module (as its own learner benchmark)."""
    path = recipe_dir()
    if not (path / "train.py").exists():
        raise FileNotFoundError(f"TorchRL's DreamerV3 recipe not found at {path}")
    sys.path.insert(0, str(path))
    spec = importlib.util.spec_from_file_location("torchrl_dreamer_v3_train", path / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def fake_env(seed=None, env_index=0, num_envs=1, obs_dim=None, pixel_shape=None, action_dim=6, discrete=False):
    """A spec-only env (the recipe's ``env.backend=custom`` factory) for building the learner."""
    import torch
    from torchrl.data import Bounded, Composite, OneHot, Unbounded
    from torchrl.envs import EnvBase

    class SpecEnv(EnvBase):
        def __init__(self):
            super().__init__(device="cpu")
            obs = {}
            if obs_dim:
                obs["observation"] = Unbounded((obs_dim,), dtype=torch.float32)
            if pixel_shape:
                obs["pixels"] = Bounded(0, 255, tuple(pixel_shape), dtype=torch.uint8)
            self.observation_spec = Composite(**obs)
            self.action_spec = OneHot(action_dim) if discrete else Bounded(-1.0, 1.0, (action_dim,))
            self.reward_spec = Unbounded((1,))

        def _reset(self, td):
            out = self.observation_spec.zero()
            out.update(self.full_done_spec.zero())
            return out

        def _step(self, td):
            out = self.observation_spec.rand()
            out.update(self.full_done_spec.zero())
            out.set("reward", torch.zeros(1))
            return out

        def _set_seed(self, seed):
            return None

    return SpecEnv()


def torchrl_config(preset: str, kind: str, batch: int, seq: int, horizon: int):
    """The recipe's config with the preset's sizes.

    The wheel ships the recipe without its ``config.yaml``; the defaults here are those of
    pytorch/rl's ``sota-implementations/dreamer_v3/config.yaml`` of the same generation (optimizer,
    loss weights, horizons, block GRU, 255 bins), plus the keys 0.14.1's ``train.py`` reads
    (image, compile and precision switches: compile off, float32).
    """
    from omegaconf import OmegaConf

    m = model_cfg(preset)
    vector = kind == "vector"
    return OmegaConf.create({
        "env": {
            "backend": "custom", "factory": f"{__name__}:fake_env", "name": "spec", "task": None,
            "factory_kwargs": {"obs_dim": OBS_DIM if vector else None,
                               "pixel_shape": None if vector else list(PIXEL_SHAPE),
                               "action_dim": ACTION_DIM if vector else PIXEL_ACTIONS, "discrete": not vector},
            "seed": 0, "use_seed": True, "max_episode_steps": 1000,
            "vector_key": "observation" if vector else None, "pixels_key": None if vector else "pixels",
        },
        "collector": {"num_envs": 1},
        "replay_buffer": {"batch_size": batch, "seq_len": seq},
        "networks": {
            "rnn_hidden_dim": m.deter,             # ours deter
            "num_categoricals": m.stoch,           # ours stoch
            "num_classes": m.classes,
            "unimix": 0.01,
            "recurrent_model": "block_gru",
            "num_blocks": m.blocks,
            "dynamics_layers": 1, "prior_layers": 2, "posterior_layers": 1,   # ours dynlayers/imglayers/obslayers
            "norm_eps": 1e-4,
            "decoder_event_dims": None,
            "num_reward_bins": 255, "num_value_bins": 255,
            "hidden_dim": m.units,                 # one width: ours `units` (MLPs) and `hidden` (RSSM)
            "encoder_layers": m.enc_layers, "decoder_layers": m.dec_layers, "reward_layers": 1,
            "actor_layers": m.actor_layers, "value_layers": m.critic_layers,
            "policy_min_std": 0.1, "policy_max_std": 1.0,
            "image_depth": m.depth, "image_mults": [2, 3, 4, 4], "image_kernel_size": 5,
            # ours: plain Linear projection (official and TorchRL's default: 8 blocks)
            "image_decoder_blocks": 1,
        },
        "optimization": {
            "compile": "off", "compile_train_step": None, "compile_rssm": None, "cudagraph_train_step": None,
            "rssm_scan_unroll": 8, "compile_train_step_mode": "default", "mixed_precision": False,
            "lr": float(m.lr), "optimizer_eps": 1e-20, "adaptive_grad_clip": 0.3,
            "warmup_steps": int(m.get("warmup", 1000)),
            "imagination_horizon": horizon, "continuation_horizon": 333, "use_reinforce": True,
            "return_normalization_rate": 0.01, "return_normalization_min_scale": 1.0,
            "slow_critic_regularization": 1.0, "slow_critic_tau": 0.02, "replay_value_loss_weight": 0.3,
            "free_bits": 1.0, "dynamic_loss_weight": 1.0, "representation_loss_weight": 0.1,
            "gamma": 1.0, "lmbda": 0.95,
        },
    })


def split_rssm_width(recipe, rssm_hidden: int) -> None:
    """Make the recipe's ``build_world_model`` use ``rssm_hidden`` for the RSSM's hidden layers.

    The recipe has one ``networks.hidden_dim`` for the RSSM and every MLP; presets whose ``hidden``
    differs from ``units`` (``vector_small``) need two. The world model is built as the recipe builds
    it (MLP width ``hidden_dim``), then its prior and posterior are rebuilt with ``rssm_hidden`` exactly
    as ``build_world_model`` builds them, and the rollout re-assembled from the public modules.
    """
    import torch
    from tensordict.nn import TensorDictModule, TensorDictSequential
    from torchrl.modules.models.model_based import RSSMPosteriorV3, RSSMPriorV3, RSSMRolloutV3

    original = recipe.build_world_model

    def build_world_model(*, cfg, obs_dim, action_dim, pixels_shape=None, compile_rollout=True,
                          rssm_backend=None, rssm_scan_unroll=8):
        n = cfg.networks
        world_model, _, reward_net, reward_decoder, continuation_net = original(
            cfg=cfg, obs_dim=obs_dim, action_dim=action_dim, pixels_shape=pixels_shape, compile_rollout=False)
        encoder, old, decoder, reward_head, continuation_head = (world_model[i] for i in range(5))
        old_post = old.rssm_posterior.module.obs_rnn_to_post_projector[0]
        prior_net = RSSMPriorV3(
            action_shape=torch.Size([action_dim]), hidden_dim=rssm_hidden, rnn_hidden_dim=n.rnn_hidden_dim,
            num_categoricals=n.num_categoricals, num_classes=n.num_classes, action_dim=action_dim,
            unimix=n.unimix, recurrent_model=n.recurrent_model, num_blocks=n.num_blocks,
            num_layers=n.dynamics_layers, prior_num_layers=n.prior_layers, norm_eps=n.norm_eps)
        posterior_net = RSSMPosteriorV3(
            hidden_dim=rssm_hidden, num_categoricals=n.num_categoricals, num_classes=n.num_classes,
            rnn_hidden_dim=n.rnn_hidden_dim, obs_embed_dim=old_post.in_features - n.rnn_hidden_dim,
            unimix=n.unimix, use_rms_norm=True, num_layers=n.posterior_layers, norm_eps=n.norm_eps)
        rollout = RSSMRolloutV3(
            TensorDictModule(prior_net, in_keys=old.rssm_prior.in_keys, out_keys=old.rssm_prior.out_keys),
            TensorDictModule(posterior_net, in_keys=old.rssm_posterior.in_keys,
                             out_keys=old.rssm_posterior.out_keys),
            reset_key="is_init")
        if compile_rollout and rssm_backend:
            rollout.compile_rollout(rssm_backend, unroll=rssm_scan_unroll if rssm_backend == "scan" else 1)
        world_model = TensorDictSequential(encoder, rollout, decoder, reward_head, continuation_head)
        return world_model, prior_net, reward_net, reward_decoder, continuation_net

    recipe.build_world_model = build_world_model


def build_torchrl(preset: str, kind: str, batch: int, seq: int, horizon: int, device: str = "cpu"):
    import torch

    recipe = load_recipe()
    cfg = torchrl_config(preset, kind, batch, seq, horizon)
    rssm_hidden = int(model_cfg(preset).hidden)
    if rssm_hidden != cfg.networks.hidden_dim:
        split_rssm_width(recipe, rssm_hidden)
    device = torch.device(device)
    vector = kind == "vector"
    obs_dim = OBS_DIM if vector else 0
    action_dim = ACTION_DIM if vector else PIXEL_ACTIONS
    pixels_shape = None if vector else PIXEL_SHAPE
    learner = recipe._build_learner(cfg, device, obs_dim, action_dim, pixels_shape, not vector)
    stepper = recipe._make_learner_update(cfg, device, learner)
    # the recipe's own representative sample (spec of the primed env, [B, T]), filled with data
    sample = recipe._fake_learner_sample(cfg, device, obs_dim, action_dim)
    B, T = batch, seq
    if vector:
        sample["next", "observation"] = torch.randn(B, T, OBS_DIM)
        sample["action"] = torch.rand(B, T, ACTION_DIM) * 2 - 1
    else:
        sample["next", "pixels"] = torch.randint(0, 256, (B, T, *PIXEL_SHAPE), dtype=torch.uint8)
        sample["action"] = torch.eye(PIXEL_ACTIONS)[torch.randint(PIXEL_ACTIONS, (B, T))].to(sample["action"].dtype)
    sample["next", "reward"] = torch.randn(B, T, 1)
    for key in ("is_init", ("next", "done"), ("next", "terminated")):
        sample[key].zero_()
    sample["state"].zero_()
    sample["belief"].zero_()
    sample = sample.to(device)

    def update():
        losses = stepper.step(None, sample)
        return recipe._learner_metrics(losses)  # the six series its loop records per update

    params = {
        "params": count(p for g in learner.optimizer.param_groups for p in g["params"]),
        "params_world_model": count(learner.world_model.parameters()),
        "params_actor": count(learner.actor_loss.actor_model.parameters()),
        "params_critic": count(learner.value_loss.value_model.parameters()),
    }
    n = cfg.networks
    sizes = {"rnn_hidden_dim": n.rnn_hidden_dim, "hidden_dim": n.hidden_dim, "rssm_hidden": rssm_hidden,
             "num_categoricals": n.num_categoricals, "num_classes": n.num_classes, "num_blocks": n.num_blocks,
             "encoder_layers": n.encoder_layers,
             "decoder_layers": n.decoder_layers, "actor_layers": n.actor_layers, "value_layers": n.value_layers}
    if not vector:
        sizes.update(image_depth=n.image_depth, image_kernel_size=n.image_kernel_size,
                     image_decoder_blocks=n.image_decoder_blocks)
    return update, params, sizes


# ---------------------------------------------------------------------------------------------
# one workload (child process)
# ---------------------------------------------------------------------------------------------
def run_one(name: str, spec, args) -> dict:
    import torch

    impl, preset, kind = spec
    if args.tune_malloc:
        tune_glibc_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    rss_import = rss_mb()  # after `import torch` only
    device = args.device
    cuda = device.startswith("cuda")
    # ours[_intrinsic][_compiled|_cudagraphs][_autocast][_bf16]: each part of the name is a switch
    flags = set(impl.split("_")[1:])
    bf16 = "bf16" in flags
    if impl == "torchrl":
        build, kwargs = build_torchrl, {"device": device}
    else:
        build = build_ours
        kwargs = {"device": device, "precision": "bfloat16" if bf16 else "float32", "intrinsic": "intrinsic" in flags,
                  "compiled": "compiled" in flags, "cudagraphs": "cudagraphs" in flags,
                  "cast": "autocast" if "autocast" in flags else "once"}
    t0 = time.perf_counter()
    update, params, sizes = build(preset, kind, args.batch, args.seq, args.horizon, **kwargs)
    build_s = time.perf_counter() - t0
    rss_built = rss_mb()
    sync = torch.cuda.synchronize if cuda else (lambda: None)  # CUDA work is asynchronous: time it finished
    if cuda:
        torch.cuda.reset_peak_memory_stats()

    def timed_update() -> tuple[float, object]:
        sync()
        t = time.perf_counter()
        part = update()
        sync()
        return time.perf_counter() - t, part

    warmup_s = [timed_update()[0] for _ in range(args.warmup)]
    times, ensemble = [], []
    for _ in range(args.iters):
        seconds, part = timed_update()
        times.append(seconds)
        if "intrinsic" in impl:  # its update returns the ensemble's seconds
            ensemble.append(part)
    extra = {}
    if ensemble:  # the XP reward ensemble's share, measured inside the same updates
        shares = [e / t for e, t in zip(ensemble, times)]
        extra = {"ensemble_sec_per_update_median": statistics.median(ensemble),
                 "ensemble_share_median": statistics.median(shares), "ensemble_share_all": shares}
    return {
        "name": name, "impl": impl, "preset": preset, "obs": kind,
        "obs_shape": [OBS_DIM] if kind == "vector" else list(PIXEL_SHAPE),
        "action": f"continuous {ACTION_DIM}" if kind == "vector" else f"discrete {PIXEL_ACTIONS}",
        **params, "sizes": sizes,
        "batch": args.batch, "seq": args.seq, "horizon": args.horizon,
        "warmup": args.warmup, "iters": args.iters, "threads": torch.get_num_threads(),
        "sec_per_update_median": statistics.median(times), "sec_per_update_min": min(times),
        "sec_per_update_all": times, "build_s": build_s, "warmup_s": warmup_s,
        # compilation (and first-call allocation) cost: the warm-up updates beyond steady-state ones
        "first_updates_overhead_s": sum(warmup_s) - len(warmup_s) * statistics.median(times),
        "peak_rss_mb": rss_mb(), "rss_after_torch_import_mb": rss_import, "rss_after_build_mb": rss_built,
        "peak_rss_above_torch_import_mb": rss_mb() - rss_import, **extra,
        "device": torch.cuda.get_device_name() if cuda else "cpu",
        "precision": "bfloat16" if bf16 else "float32",
        **({"peak_cuda_allocated_mb": torch.cuda.max_memory_allocated() / 2**20} if cuda else {}),
    }


# ---------------------------------------------------------------------------------------------
# driver
# ---------------------------------------------------------------------------------------------
def spawn(name: str, args) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", name, "--iters", str(args.iters),
           "--warmup", str(args.warmup), "--threads", str(args.threads), "--batch", str(args.batch),
           "--seq", str(args.seq), "--horizon", str(args.horizon), "--device", args.device] \
        + (["--quick"] if args.quick else []) \
        + (["--tune-malloc"] if args.tune_malloc else [])
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), MKL_NUM_THREADS=str(args.threads),
               PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    impl, preset, kind = catalogue_for(args)[name]
    failed = {"name": name, "impl": impl, "preset": preset, "obs": kind}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT, timeout=args.timeout)
    except subprocess.TimeoutExpired:
        return {**failed, "error": f"timed out after {args.timeout:.0f} s"}
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith(RESULT_MARK):
            return json.loads(line[len(RESULT_MARK):])
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-5:]
    return {**failed, "error": f"rc={proc.returncode}: " + " | ".join(tail)}


def catalogue_for(args) -> dict:
    """The workloads a name may pick: the quick ones, or every full-size one (CPU and GPU)."""
    return QUICK if args.quick else {**WORKLOADS, **GPU_WORKLOADS}


def compute_ratios(rows: list[dict]) -> dict:
    """Median-time ratios between rows of the same run: each variant over eager float32 ``ours``, each bf16 row
    over its float32 twin (the same name without ``_bf16``), and TorchRL over ``ours`` and over every bf16 row."""
    ok = {(r["impl"], r["preset"], r["obs"]): r for r in rows if "error" not in r}
    ratios = {}
    for (impl, preset, kind), r in ok.items():
        med = r["sec_per_update_median"]
        ours, torchrl = ok.get(("ours", preset, kind)), ok.get(("torchrl", preset, kind))
        if impl.startswith("ours_") and "intrinsic" not in impl and ours is not None:
            ratios[f"{preset}/{kind}/{impl.removeprefix('ours_')}"] = {
                "variant_over_eager_median": med / ours["sec_per_update_median"],
                "first_updates_overhead_s": r["first_updates_overhead_s"],
            }
        twin = ok.get((impl.replace("_bf16", ""), preset, kind)) if impl.endswith("_bf16") else None
        if twin is not None:
            ratios[f"{preset}/{kind}/{impl.removeprefix('ours_')}/over_float32"] = {
                "bf16_over_float32_median": med / twin["sec_per_update_median"],
                "float32_row": twin["name"],
                **({"torchrl_over_this_median": torchrl["sec_per_update_median"] / med} if torchrl else {}),
            }
        if impl == "torchrl" and ours is not None:
            ratios[f"{preset}/{kind}"] = {
                "torchrl_over_ours_median": med / ours["sec_per_update_median"],
                "torchrl_over_ours_min": r["sec_per_update_min"] / ours["sec_per_update_min"],
                "params_torchrl": r.get("params"), "params_ours": ours.get("params"),
            }
    return ratios


def table(rows: list[dict]) -> str:
    out = [f"{'workload':30s} {'params':>11s} {'median s':>9s} {'min s':>9s} {'peak RSS MB':>11s} {'above torch':>11s}"]
    for r in rows:
        if "error" in r:
            out.append(f"{r['name']:30s} ERROR {r['error'][:90]}")
        else:
            out.append(f"{r['name']:30s} {r['params']:11,d} {r['sec_per_update_median']:9.3f} "
                       f"{r['sec_per_update_min']:9.3f} {r['peak_rss_mb']:11.0f} "
                       f"{r['peak_rss_above_torch_import_mb']:11.0f}")
    return "\n".join(out)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--iters", type=int, default=None, help="timed updates per workload (5; quick 1)")
    p.add_argument("--warmup", type=int, default=2, help="untimed updates first (>= 2 recommended)")
    p.add_argument("--threads", type=int, default=None, help="torch.set_num_threads (2; quick 1)")
    p.add_argument("--batch", type=int, default=None, help="sequences per batch (16; quick 2)")
    p.add_argument("--seq", type=int, default=None, help="trained steps per sequence (64; quick 8)")
    p.add_argument("--horizon", type=int, default=None, help="imagination horizon (15; quick 3)")
    p.add_argument("--quick", action="store_true", help="tiny sizes, batch 2x8, horizon 3, 1 iteration")
    p.add_argument("--workloads", nargs="+", default=None, help="subset of workload names")
    p.add_argument("--tune-malloc", action="store_true",
                   help="glibc mallopt: large temporaries reused from the heap, in every workload's process")
    p.add_argument("--timeout", type=float, default=3600, help="seconds per workload subprocess")
    p.add_argument("--out", type=Path, default=RESULTS)
    p.add_argument("--device", default="cpu", help="cpu, or cuda (default workloads: GPU_WORKLOADS)")
    p.add_argument("--jobs", type=int, default=1,
                   help="workload subprocesses at once; above 1 they share the cores and distort each other's "
                        "timings, so only --quick (a smoke run) accepts it")
    p.add_argument("--one", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.seq, args.horizon = args.batch or 2, args.seq or 8, args.horizon or 3
        args.iters = args.iters or 1
        # one thread: a smoke test must not depend on the machine being idle (see main's load check)
        args.threads = args.threads or 1
    else:
        args.batch, args.seq, args.horizon = args.batch or 16, args.seq or 64, args.horizon or 15
        args.threads = args.threads or 2
        args.iters = args.iters or 5
    if args.jobs < 1 or (args.jobs > 1 and not args.quick):
        p.error(f"--jobs {args.jobs}: timed workloads run one at a time; --jobs above 1 is for --quick only")
    catalogue = catalogue_for(args)

    if args.one is not None:  # child
        print(RESULT_MARK + json.dumps(run_one(args.one, catalogue[args.one], args)), flush=True)
        return 0

    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    if load_before is not None and load_before > 0.5 * (os.cpu_count() or 1) / max(args.threads, 1):
        # with every core busy elsewhere, each OpenMP barrier of a multi-threaded op can wait a whole
        # scheduler slice: updates measured at 2 threads on a loaded 2-core machine came out ~20x slower
        print(f"warning: load average {load_before:.2f} on {os.cpu_count()} CPUs; timings at "
              f"{args.threads} threads will be distorted by other processes", flush=True)
    names = args.workloads or list(GPU_WORKLOADS if args.device.startswith("cuda") and not args.quick else catalogue)
    unknown = [n for n in names if n not in catalogue]
    if unknown:
        p.error(f"unknown workloads {unknown}; choose from {list(catalogue)}")

    def run(name: str) -> dict:
        print(f"running {name} ...", flush=True)
        return spawn(name, args)

    with ThreadPoolExecutor(args.jobs) as pool:  # one at a time unless a smoke run asks for more
        rows = list(pool.map(run, names))
    ratios = compute_ratios(rows)
    import torch
    import torchrl

    result = {
        "benchmark": "update_speed",
        "what": "seconds per full DreamerV3 update (world model + imagination from every posterior state + actor"
                " + critic + backward + optimizer step + slow critic); float32 unless a row says bfloat16",
        "device": args.device,
        "quick": args.quick,
        "jobs": args.jobs,
        "tune_malloc": args.tune_malloc,
        "workloads": rows,
        "ratios": ratios,
        "torchrl_setup": {
            "recipe": "sota-implementations/dreamer_v3/train.py (_build_learner, _make_learner_update), "
                      "DreamerV3OptimizationStepper eager (compile off), mixed precision off",
            "recipe_dir": str(recipe_dir()),
            "pixels": "supported by the recipe: DreamerV3ImageEncoder/Decoder, stride-2 (transposed) convs kernel 5, "
                      "DreamerV3DiscreteActor",
            "differences": [
                "sizes: mapped from the same preset (deter->rnn_hidden_dim, stoch x classes->num_categoricals x "
                "num_classes, blocks, units->hidden_dim, enc/dec/actor/critic layers, 1-layer reward/continue "
                "heads, 2 prior / 1 posterior / 1 dynamics layers, 255 two-hot bins, block GRU, RMSNorm eps 1e-4, "
                "unimix 0.01); parameter counts are equal for the vector rows",
                "the recipe has one hidden_dim for the RSSM and all MLPs; where the preset's RSSM hidden differs "
                "from units (vector_small: 64 vs 128) the prior/posterior are rebuilt with the RSSM width "
                "from the same public classes (split_rssm_width), everything else as the recipe builds it",
                "imagination runs through DreamerEnv.rollout (TensorDict env steps, policy as a TensorDict "
                "module) instead of a tensor loop; the actor loss evaluates the policy and the critic again on "
                "the imagined states",
                "batch: [B, T] transitions starting from the stored state/belief, ours [B, T+1] with one "
                "replay-context step; both train the world model on B*T steps and imagine from B*T states",
                "pixels: TorchRL's image encoder uses stride-2 5x5 convs and its decoder stride-2 transposed "
                "convs; ours (size12m, official strided: False) 5x5 stride-1 convs + 2x2 max-pool and nearest "
                "upsample + 5x5 convs (about 4x the conv FLOPs); decoder projection set to a plain Linear "
                "(image_decoder_blocks=1) as ours (TorchRL's and the official default: 8 blocks); 960 params "
                "differ (ours RMSNorm over the projected features, TorchRL a channel RMSNorm)",
                "continuous actor: separate mean and std heads (ours one Linear to 2*action_dim); same "
                "Normal(tanh(mean), 0.9*sigmoid(s+2)+0.1) and parameter count",
            ],
        },
        "machine": {
            "torch": torch.__version__, "torchrl": torchrl.__version__, "threads": args.threads,
            "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "processor": platform.processor(),
            "cuda_device": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
            "loadavg_1min_before": load_before,
            "loadavg_1min_after": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "date": datetime.datetime.now().isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(table(rows))
    for r in rows:
        if "ensemble_share_median" in r:
            print(f"{r['name']}: reward ensemble {r['ensemble_sec_per_update_median']:.3f} s per update, "
                  f"{100 * r['ensemble_share_median']:.1f}% of the update (median)")
    for key, r in ratios.items():
        if "bf16_over_float32_median" in r:
            print(f"{key}: {r['bf16_over_float32_median']:.2f}x of {r['float32_row']} (median)"
                  + (f", TorchRL {r['torchrl_over_this_median']:.2f}x this" if "torchrl_over_this_median" in r else ""))
            continue
        if "variant_over_eager_median" in r:
            print(f"{key} / eager float32: {r['variant_over_eager_median']:.2f}x (median), "
                  f"first updates' extra time (compilation) {r['first_updates_overhead_s']:.0f} s")
            continue
        med = r["torchrl_over_ours_median"]
        print(f"torchrl/ours {key}: " + (f"{med:.2f}x (median)" if med is not None and math.isfinite(med) else "n/a"))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
