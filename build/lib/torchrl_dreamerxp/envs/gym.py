"""Gymnasium tasks with vector observations as TorchRL envs."""

from __future__ import annotations

import numpy as np
import torch
from torchrl.envs import EnvBase, GymWrapper

__all__ = ["make_gym", "GYM_DEFAULTS"]

#: ``max_episode_steps=None`` keeps the registry's time limit.
GYM_DEFAULTS = dict(max_episode_steps=None)


def _clip_unit(action: np.ndarray) -> np.ndarray:
    return np.clip(action, -1.0, 1.0)


def make_gym(
    env_id: str,
    *,
    max_episode_steps: int | None = None,
    seed: int | None = None,
    device: torch.device | str = "cpu",
) -> EnvBase:
    """Builds a gymnasium task with a vector (``Box``) observation as a TorchRL env.

    The observation is ``"observation"``, float32 ``[obs_dim]``. A ``Discrete`` action
    space becomes a one-hot ``"action"`` (``OneHot`` spec, int64); a ``Box`` action space
    becomes ``Bounded`` in ``[-1, 1]``, rescaled to the env's bounds (gymnasium's
    ``RescaleAction``) after clipping to ``[-1, 1]``. The time limit ends an
    episode with ``truncated``.

    Args:
        env_id: a registered gymnasium id, e.g. ``"CartPole-v1"``.
        max_episode_steps: overrides the registry's time limit.
        seed: seeds the first reset (later resets continue its generator).
        device: device of the output tensors.

    Returns:
        A ``torchrl.envs.GymWrapper`` around the wrapped gymnasium env.

    Raises:
        ValueError: the id is not registered, or its observation is not a 1-D ``Box``,
            or its action space is neither ``Discrete`` nor a bounded ``Box``.

    Examples:
        >>> env = make_gym("Pendulum-v1", seed=0)
        >>> env.action_spec.space.low, env.action_spec.space.high
        (tensor([-1.]), tensor([1.]))
    """
    import gymnasium
    from gymnasium import spaces, wrappers

    try:
        gymnasium.spec(env_id)
    except gymnasium.error.Error as err:
        raise ValueError(
            f"{env_id!r} is not a registered gymnasium id ({err}). Use ids such as "
            f"'gym/CartPole-v1' or 'gym/Pendulum-v1' (gymnasium.pprint_registry() lists "
            f"them); Atari games go through 'atari/<Game>', DMC tasks through 'dmc/...'."
        ) from None

    kwargs = {} if max_episode_steps is None else {"max_episode_steps": int(max_episode_steps)}
    env = gymnasium.make(env_id, **kwargs)
    obs_space, act_space = env.observation_space, env.action_space
    if not (isinstance(obs_space, spaces.Box) and len(obs_space.shape) == 1):
        env.close()
        raise ValueError(
            f"gym/{env_id} has observation space {obs_space}: the gym family supports only "
            f"vector (1-D Box) observations. Use 'atari/<Game>' or 'dmc/<domain>_<task>' "
            f"for pixels."
        )
    if obs_space.dtype != np.float32:
        env = wrappers.DtypeObservation(env, np.float32)
    if isinstance(act_space, spaces.Box):
        if not (np.isfinite(act_space.low).all() and np.isfinite(act_space.high).all()):
            env.close()
            raise ValueError(
                f"gym/{env_id} has unbounded actions {act_space}: they cannot be rescaled "
                f"to [-1, 1]."
            )
        unit = np.ones(act_space.shape, act_space.dtype)
        env = wrappers.RescaleAction(env, -unit, unit)
        env = wrappers.TransformAction(env, _clip_unit, env.action_space)
    elif not isinstance(act_space, spaces.Discrete):
        env.close()
        raise ValueError(
            f"gym/{env_id} has action space {act_space}: only Discrete and Box are supported."
        )

    torchrl_env = GymWrapper(env, categorical_action_encoding=False, device=device)
    if seed is not None:
        torchrl_env.set_seed(seed)
    return torchrl_env
