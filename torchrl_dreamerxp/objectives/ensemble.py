"""Loss of the reward ensemble: one-step predictions on replayed posterior transitions."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

from ..modules.reward_ensemble import RewardEnsemble

__all__ = ["RewardEnsembleLoss"]


class RewardEnsembleLoss(LossModule):
    """Trains every member of a :class:`~torchrl_dreamerxp.modules.RewardEnsemble` on replayed transitions.

    Input: posterior states of a replayed slice ``[B, T]`` (``"deter"``, ``"stoch"``, detached here),
    ``"prev_action"`` (step ``t`` stores the action that led to it), ``"reward"`` and ``"is_first"``.
    Transition ``t → t+1`` is ``(h_t, z_t, a_{t+1}) → (z_{t+1}, r_{t+1})``; transitions into a step that
    starts an episode are masked out. ``loss_ensemble`` is the mean over transitions of the members'
    summed losses (latent mode: cross-entropy against the posterior sample; reward mode: symlog MSE).

    Inputs are detached, so the world model receives no gradient; step this loss with its own optimizer.

    Examples:
        >>> from torchrl_dreamerxp.modules import RewardEnsemble
        >>> ens = RewardEnsemble(8, 2, 2, action_dim=1, members=3, units=8, layers=1, mode="reward")
        >>> td = TensorDict({"deter": torch.zeros(2, 5, 8), "stoch": torch.zeros(2, 5, 2, 2), "prev_action": torch.zeros(2, 5, 1),
        ...     "reward": torch.ones(2, 5), "is_first": torch.zeros(2, 5, dtype=torch.bool)}, [2, 5])
        >>> RewardEnsembleLoss(ens)(td)["loss_ensemble"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the replayed slice; change them with :meth:`set_keys`."""

        deter: str = "deter"
        stoch: str = "stoch"
        prev_action: str = "prev_action"
        reward: str = "reward"
        is_first: str = "is_first"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(self, ensemble: RewardEnsemble):
        super().__init__()
        self.ensemble = ensemble

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        deter, stoch = tensordict.get(k.deter).detach(), tensordict.get(k.stoch).detach()
        shape = tensordict.shape
        action = tensordict.get(k.prev_action)
        reward = tensordict.get(k.reward).reshape(shape)
        valid = (~tensordict.get(k.is_first).reshape(shape)[:, 1:]).float()
        per_step = self.ensemble.loss(deter[:, :-1], stoch[:, :-1], action[:, 1:], stoch[:, 1:], reward[:, 1:])
        loss = (per_step * valid).sum() / valid.sum().clamp(min=1.0)
        return TensorDict({"loss_ensemble": loss}, batch_size=[])
