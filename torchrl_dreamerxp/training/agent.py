"""Build the DreamerV3 networks for an env from a model preset."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torchrl.data import OneHot
from torchrl.envs import EnvBase

from ..modules import MLP, Actor, RewardEnsemble, TwoHotHead, WorldModel
from ..schedulers import scheduler_from_config
from ..transforms import IntrinsicRewardTransform
from .learner import Learner
from .precision import resolve_precision

__all__ = ["EnvShapes", "env_shapes", "build_networks", "compile_networks", "build_intrinsic", "build_learner", "build_agent"]


@dataclass
class EnvShapes:
    """What the networks need of an env: vector size, pixel shape, action size, discrete or not.

    Examples:
        >>> EnvShapes(obs_dim=4, pixel_shape=None, action_dim=2, discrete=True).action_dim
        2
    """

    obs_dim: int | None
    pixel_shape: tuple[int, int, int] | None
    action_dim: int
    discrete: bool


def env_shapes(env: EnvBase) -> EnvShapes:
    """What the networks need to know of an env made by ``make_env``.

    Examples:
        >>> from torchrl_dreamerxp.envs import make_env
        >>> env_shapes(make_env("gym/CartPole-v1"))
        EnvShapes(obs_dim=4, pixel_shape=None, action_dim=2, discrete=True)
    """
    obs = env.observation_spec
    action_spec = env.action_spec
    return EnvShapes(
        obs_dim=obs["observation"].shape[-1] if "observation" in obs.keys() else None,
        pixel_shape=tuple(obs["pixels"].shape[-3:]) if "pixels" in obs.keys() else None,
        action_dim=action_spec.shape[-1],
        discrete=isinstance(action_spec, OneHot),
    )


def build_networks(model_cfg, shapes: EnvShapes):
    """World model, actor and critic of a preset (``configs/model/*.yaml``).

    Examples:
        >>> from omegaconf import OmegaConf
        >>> preset = OmegaConf.load("configs/model/tiny.yaml")
        >>> wm, actor, critic = build_networks(preset, EnvShapes(4, None, 2, True))
        >>> wm.rssm.deter, actor.discrete
        (32, True)
    """
    m = model_cfg
    world_model = WorldModel(
        action_dim=shapes.action_dim, obs_dim=shapes.obs_dim, pixel_shape=shapes.pixel_shape,
        deter=m.deter, hidden=m.hidden, stoch=m.stoch, classes=m.classes, blocks=m.blocks, units=m.units,
        depth=m.depth, enc_layers=m.enc_layers, dec_layers=m.dec_layers, strided_cnn=m.get("strided_cnn", False),
    )
    feat = world_model.rssm.feature_dim()
    actor = Actor(feat, shapes.action_dim, shapes.discrete, units=m.units, layers=m.actor_layers)
    critic = TwoHotHead(feat, units=m.units, layers=m.critic_layers)
    return world_model, actor, critic


def compile_networks(world_model: WorldModel, actor: Actor, critic: TwoHotHead, ensemble: RewardEnsemble | None = None,
                     **compile_kwargs) -> int:
    """``compile=true``: ``torch.compile`` the RSSM steps and, in place, every MLP of the three networks (and,
    given the XP reward ensemble, its scoring of imagined steps and its member MLP).

    Same math, fewer passes over memory: inductor fuses each hidden layer's RMSNorm and SiLU (forward and
    backward) around the matrix products (measured in ``docs/benchmarks.md``). Each MLP compiles once per input
    shape and grad mode (acting, training, imagination), so dynamo's recompile limit is raised to hold them.
    Returns the number of MLPs compiled.

    Examples:
        >>> from omegaconf import OmegaConf
        >>> wm, actor, critic = build_networks(OmegaConf.load("configs/model/tiny.yaml"), EnvShapes(4, None, 2, True))
        >>> compile_networks(wm, actor, critic, dynamic=False)
        6
    """
    world_model.rssm.compile_steps(**compile_kwargs)
    mlps = [m for net in (world_model, actor, critic) for m in net.modules() if isinstance(m, MLP)]
    # all MLPs share one code object (nn.Sequential.forward): each instance × shape × grad mode is an entry
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 8 * len(mlps))
    for mlp in mlps:
        mlp.compile(**compile_kwargs)
    if ensemble is not None:
        # inductor only: the ensemble's CUDA-graph capture (mode="reduce-overhead") has never run on a GPU
        ensemble.compile_scoring(**{k: v for k, v in compile_kwargs.items() if k != "mode"})
    return len(mlps)


def build_intrinsic(xp_cfg, world_model: WorldModel, shapes: EnvShapes):
    """The reward ensemble and the transform that mixes its intrinsic reward into imagination.

    Examples:
        >>> from omegaconf import OmegaConf
        >>> xp = OmegaConf.load("configs/xp/intrinsic.yaml")
        >>> xp.ensemble.units = 8
        >>> wm, _, _ = build_networks(OmegaConf.load("configs/model/tiny.yaml"), EnvShapes(4, None, 2, True))
        >>> ensemble, transform = build_intrinsic(xp, wm, EnvShapes(4, None, 2, True))
        >>> ensemble.members, transform.window, transform.lam
        (5, 5, 0.5)
    """
    e, rssm = xp_cfg.ensemble, world_model.rssm
    ensemble = RewardEnsemble(rssm.deter, rssm.stoch, rssm.classes, shapes.action_dim, members=e.members,
                              units=e.units, layers=e.layers, mode=e.mode, reward_head=world_model.reward)
    transform = IntrinsicRewardTransform.for_imagination(ensemble, scheduler_from_config(xp_cfg.scheduler), window=xp_cfg.window,
                                                         init_key="is_first")  # replayed slices carry episode starts
    return ensemble, transform


def build_learner(cfg, world_model: WorldModel, actor: Actor, critic: TwoHotHead, ensemble=None,
                  reward_transform=None, device: torch.device | str = "cpu") -> Learner:
    """The :class:`~torchrl_dreamerxp.training.Learner` of a training config (``configs/train.yaml``): its
    ``agent.*`` settings, ``replay_context``, ``precision`` (``auto`` resolved for ``device`` as
    :func:`~torchrl_dreamerxp.training.config_check.validate_config` does) and, with an ensemble,
    ``xp.ensemble.lr``.

    Examples:
        >>> from omegaconf import OmegaConf
        >>> cfg = OmegaConf.load("configs/train.yaml")
        >>> cfg.model = OmegaConf.load("configs/model/tiny.yaml")
        >>> learner = build_learner(cfg, *build_networks(cfg.model, EnvShapes(4, None, 2, True)))
        >>> learner.imagination.horizon, learner.optimizer.param_groups[0]["lr"] == cfg.model.lr
        (15, True)
    """
    a = cfg.agent
    return Learner(
        world_model, actor, critic, horizon=a.horizon, lr=a.lr, actor_lr=a.actor_lr, critic_lr=a.critic_lr,
        agc=a.agc, eps=a.eps, warmup=a.warmup, slow_critic_rate=a.slow_critic_rate,
        reward_transform=reward_transform, ensemble=ensemble,
        ensemble_lr=cfg.xp.ensemble.lr if ensemble is not None else 1e-4,
        world_model_kwargs=dict(free_nats=a.free_nats, dyn_scale=a.dyn_scale, rep_scale=a.rep_scale,
                                horizon=a.return_horizon, context=cfg.replay_context),
        actor_kwargs=dict(lmbda=a.lmbda, entropy_coef=a.entropy_coef, return_norm_debias=a.return_norm_debias),
        critic_kwargs=dict(lmbda=a.lmbda, replay_scale=a.replay_value_scale, horizon=a.return_horizon),
        precision=resolve_precision(cfg.precision, device), max_loss=cfg.get("max_loss", float("inf")),
    )


def build_agent(cfg, shapes: EnvShapes, device: torch.device | str = "cpu", distributed=None):
    """The recipe's agent for an env: networks of ``cfg.model`` (compiled with ``compile=true``; with
    ``reduce-overhead`` also replayed as CUDA graphs on a GPU), the XP ensemble and its transform when
    ``cfg.xp.intrinsic``, the :class:`Learner` on ``device`` (data-parallel under ``torchrun``) and the acting
    :class:`~torchrl_dreamerxp.modules.DreamerPolicy`. Returns ``(learner, policy)``.

    Examples:
        >>> from omegaconf import OmegaConf
        >>> cfg = OmegaConf.load("configs/train.yaml")
        >>> cfg.model, cfg.xp = OmegaConf.load("configs/model/tiny.yaml"), OmegaConf.load("configs/xp/none.yaml")
        >>> learner, policy = build_agent(cfg, EnvShapes(4, None, 2, True))
        >>> policy.world_model is learner.world_model, learner.reward_transform is None
        (True, True)
    """
    from ..modules import DreamerPolicy

    world_model, actor, critic = build_networks(cfg.model, shapes)
    # XP latent reward disagreement: an ensemble's intrinsic reward mixed into the imagined one
    ensemble, reward_transform = build_intrinsic(cfg.xp, world_model, shapes) if cfg.xp.intrinsic else (None, None)
    if cfg.compile:
        mode = {"mode": "reduce-overhead"} if cfg.compile == "reduce-overhead" else {}
        compile_networks(world_model, actor, critic, ensemble, dynamic=False, **mode)
    learner = build_learner(cfg, world_model, actor, critic, ensemble, reward_transform, device).to(device)
    if distributed is not None:
        learner.enable_data_parallel(distributed)
    return learner, DreamerPolicy(world_model, actor)
