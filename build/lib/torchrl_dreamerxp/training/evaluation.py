"""Evaluation episodes with the deterministic policy on a separate env."""
from __future__ import annotations

import torch
from torchrl.envs import EnvBase
from torchrl.envs.utils import ExplorationType, set_exploration_type

__all__ = ["evaluate"]


@torch.no_grad()
def evaluate(env: EnvBase, policy, episodes: int, max_steps: int) -> list[float]:
    """Returns of ``episodes`` full episodes (cut at ``max_steps``) under the policy's mode.

    ``policy=None`` evaluates the uniformly random policy (the baseline every curve is drawn against).

    Examples:
        >>> from torchrl_dreamerxp.envs import make_env
        >>> len(evaluate(make_env("gym/CartPole-v1", seed=0), None, episodes=2, max_steps=500))
        2
    """
    returns = []
    with set_exploration_type(ExplorationType.DETERMINISTIC):
        for _ in range(episodes):
            rollout = env.rollout(max_steps, policy, break_when_any_done=True)
            returns.append(float(rollout["next", "reward"].sum()))
    return returns
