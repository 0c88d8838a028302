"""Critic loss of DreamerV3: two-hot regression to λ-returns, slow-critic regularizer, replay value loss."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.objectives import LossModule

from ..functional import lambda_returns
from ..modules.heads import TwoHotHead

__all__ = ["CriticLoss"]


class CriticLoss(LossModule):
    """Two-hot critic loss on imagined and replayed trajectories (official ``imag_loss``/``repl_loss``).

    The slow critic is this loss's target parameters (``target_critic_params``): keep it updated with
    ``torchrl.objectives.SoftUpdate(critic_loss, tau=0.02)`` after every optimizer step.

    Imagined part, on ``("imagined", ...)`` ``[N, H+1]`` written by :class:`ActorLoss` (its
    ``"value_logits"``, the critic's logits with gradients, are reused when present)::

        loss_critic = mean_t w_t·(CE(v_θ(s_t), R_t) + slowreg·CE(v_θ(s_t), v_slow(s_t))),  t < H

    Replay part, on ``("replay", ...)`` ``[B, T]`` (posterior features with gradients, reward,
    ``is_terminal``, ``is_last``, and ``bootstrap``: the imagined return from each state)::

        R_t = r_{t+1} + γ(1 − term_{t+1})((1 − λ_t)·b_{t+1} + λ_t·R_{t+1}),   λ_t = λ(1 − last_{t+1}),
        R_{T−1} = b_{T−1},  γ = 1 − 1/horizon,  b = bootstrap (the imagined λ-return from each state)
        loss_critic_replay = scale·mean_t (1 − last_t)·(CE(v_θ(s_t), R_t) + slowreg·CE(v_θ(s_t), v_slow(s_t)))

    The per-step critic error ``value_error = |R_t − v(s_t)|`` on the replay part feeds prioritized replay.

    Args:
        critic: the two-hot critic head. lmbda: 0.95. slow_reg: 1.0. replay_scale: 0.3.
        horizon: 333 (γ = 1 − 1/333).

    Examples:
        >>> from torchrl_dreamerxp.modules import TwoHotHead
        >>> loss = CriticLoss(TwoHotHead(6, 8, 1))
        >>> imagined = TensorDict({"feature": torch.randn(4, 3, 6), "lambda_return": torch.ones(4, 3),
        ...     "weight": torch.ones(4, 3)}, [4, 3])
        >>> loss(TensorDict({"imagined": imagined}, []))["loss_critic"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the imagined and replayed parts; change them with :meth:`set_keys`."""

        feature: str = "feature"
        lambda_return: str = "lambda_return"
        weight: str = "weight"
        reward: str = "reward"
        is_terminal: str = "is_terminal"
        is_last: str = "is_last"
        bootstrap: str = "bootstrap"
        value_logits: str = "value_logits"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys
    critic: TwoHotHead
    critic_params: TensorDictBase
    target_critic_params: TensorDictBase

    def __init__(self, critic: TwoHotHead, *, lmbda=0.95, slow_reg=1.0, replay_scale=0.3, horizon=333):
        super().__init__()
        self.convert_to_functional(critic, "critic", create_target_params=True)
        self.lmbda, self.slow_reg, self.replay_scale = lmbda, slow_reg, replay_scale
        self.gamma = 1.0 - 1.0 / horizon

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def _slow_value(self, feat):
        with torch.no_grad(), self.target_critic_params.to_module(self.critic):
            return self.critic.predict(self.critic(feat))

    def _regression(self, logits, slow_value, target):
        return self.critic.loss(logits, target) + self.slow_reg * self.critic.loss(logits, slow_value)

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        imag = tensordict.get("imagined")
        feat = imag.get(k.feature).detach()
        # ActorLoss already ran the critic on these features (with gradients): reuse, don't recompute
        logits = imag.get(k.value_logits, None)
        logits = (self.critic(feat) if logits is None else logits)[:, :-1]
        # the networks run on whole trajectories and the last state is sliced off their outputs: slicing the
        # features first would copy them (N·H·features floats) to make the slice contiguous
        slow = self._slow_value(feat)[:, :-1]
        loss = imag.get(k.weight)[:, :-1] * self._regression(logits, slow, imag.get(k.lambda_return)[:, :-1])
        out = {"loss_critic": loss.mean()}
        replay = tensordict.get("replay", None)
        if replay is not None:
            out.update(self.replay_loss(replay))
        return TensorDict(out, batch_size=[])

    def replay_loss(self, replay: TensorDictBase) -> dict:
        k = self.tensor_keys
        feat = replay.get(k.feature)
        shape = feat.shape[:2]
        term = replay.get(k.is_terminal).reshape(shape).float()
        last = replay.get(k.is_last).reshape(shape).float()
        reward = replay.get(k.reward).reshape(shape).float()
        logits = self.critic(feat)  # one forward serves the value estimate and the regression
        with torch.no_grad():
            value = self.critic.predict(logits.detach())
            # the official lambda_return bootstraps every step from the imagined return (``boot``), not the
            # critic: its ``val`` argument goes unused
            boot = replay.get(k.bootstrap).reshape(shape)
            ret = lambda_returns(reward[:, 1:], boot[:, 1:], 1.0 - term[:, 1:], boot[:, -1],
                                 gamma=self.gamma, lmbda=self.lmbda * (1.0 - last[:, 1:]))
        loss = (1.0 - last[:, :-1]) * self._regression(logits[:, :-1], self._slow_value(feat)[:, :-1], ret)
        return {
            "loss_critic_replay": self.replay_scale * loss.mean(),
            "value_error": (ret - value[:, :-1]).abs(),
        }
