"""Build the DreamerV3 networks for an env from a model preset."""
from __future__ import annotations

from dataclasses import dataclass

from torchrl.data import OneHot
from torchrl.envs import EnvBase

from ..modules import Actor, TwoHotHead, WorldModel

__all__ = ["EnvShapes", "env_shapes", "build_networks"]


@dataclass
class EnvShapes:
    obs_dim: int | None
    pixel_shape: tuple[int, int, int] | None
    action_dim: int
    discrete: bool


def env_shapes(env: EnvBase) -> EnvShapes:
    """What the networks need to know of an env made by ``make_env``."""
    obs = env.observation_spec
    action_spec = env.action_spec
    return EnvShapes(
        obs_dim=obs["observation"].shape[-1] if "observation" in obs.keys() else None,
        pixel_shape=tuple(obs["pixels"].shape[-3:]) if "pixels" in obs.keys() else None,
        action_dim=action_spec.shape[-1],
        discrete=isinstance(action_spec, OneHot),
    )


def build_networks(model_cfg, shapes: EnvShapes):
    """World model, actor and critic of a preset (``configs/model/*.yaml``)."""
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
