"""Imagination: roll the RSSM prior forward under the actor from every posterior state."""
from __future__ import annotations

from typing import Callable

import torch
from tensordict import TensorDict, TensorDictBase
from torch import nn

from .actor import Actor
from .world_model import WorldModel

__all__ = ["Imagination"]


class Imagination(nn.Module):
    """Imagined trajectories ``[N, H+1]`` from ``N`` start states, as a plain tensor loop.

    Why not TorchRL's model-based env: a tensor loop is faster (``docs/benchmarks.md``), and the rollout
    runs without autograd (the official agent stops gradients into the imagined
    states) except for the actor's distribution, which the actor loss reuses.

    The output holds ``"deter"``, ``"stoch"``, ``"feature"``, ``"action"`` (action taken at each state,
    the last one sampled at the final state), ``"policy"`` (the actor's distribution parameters at each
    state, :meth:`Actor.dist_params`, with gradients to the actor when the caller records them),
    ``"reward"`` (reward head, ``reward[:, t]`` is the reward of arriving at state ``t``) and
    ``"continue"`` (continue head probability, discount included).
    ``reward_transform`` (e.g. :class:`~torchrl_dreamerxp.transforms.IntrinsicRewardTransform`) may
    rewrite ``"reward"`` before any return is computed.

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, WorldModel
        >>> wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        >>> actor = Actor(wm.rssm.feature_dim(), 2, discrete=True, units=8, layers=1)
        >>> deter, stoch = wm.rssm.initial(5)
        >>> Imagination(wm, actor, horizon=3)(deter, stoch).shape
        torch.Size([5, 4])
    """

    def __init__(self, world_model: WorldModel, actor: Actor, horizon: int = 15,
                 reward_transform: Callable[[TensorDictBase], TensorDictBase] | None = None):
        super().__init__()
        self.world_model, self.actor, self.horizon = world_model, actor, horizon
        self.reward_transform = reward_transform

    def forward(self, deter: torch.Tensor, stoch: torch.Tensor) -> TensorDictBase:
        rssm = self.world_model.rssm
        # only the actor's distribution keeps a graph (when the caller records one): ActorLoss takes
        # its log-probabilities from it instead of running the actor over every imagined state again
        actor_grad = torch.is_grad_enabled()
        with torch.no_grad():
            deter, stoch = deter.detach().to(rssm.compute_dtype), stoch.detach().to(rssm.compute_dtype)
            feats, actions, policies = [], [], []
            for t in range(self.horizon + 1):
                feats.append(rssm.features(deter, stoch))
                with torch.set_grad_enabled(actor_grad):
                    policy = self.actor.dist_params(feats[-1])
                actions.append(self.actor.sample(policy))
                policies.append(policy)
                if t == self.horizon:  # the last state's action is sampled but not stepped
                    break
                deter, stoch, _ = rssm.img_step(deter, stoch, actions[-1])
            # one copy: the states are views of the stacked features, not stacked again and concatenated
            feat = torch.stack(feats, 1)
            deter = feat[..., : rssm.deter]
            stoch = feat[..., rssm.deter:].unflatten(-1, (rssm.stoch, rssm.classes))
            td = TensorDict(
                {
                    "deter": deter,
                    "stoch": stoch,
                    "feature": feat,
                    "action": torch.stack(actions, 1),
                    "reward": self.world_model.reward.predict(self.world_model.reward(feat)),
                    "continue": torch.sigmoid(self.world_model.cont(feat).float()),
                },
                batch_size=feat.shape[:2],
            )
        td.set("policy", torch.stack(policies, 1))
        if self.reward_transform is not None:
            with torch.no_grad():
                td = self.reward_transform(td)
        return td
