"""Actor loss of DreamerV3: REINFORCE on normalized λ-returns of imagined trajectories."""
from __future__ import annotations

from dataclasses import dataclass

import torch
from tensordict import TensorDict, TensorDictBase
from torchrl.modules.value_norm import PercentileValueNorm
from torchrl.objectives import LossModule

from ..functional import lambda_returns
from ..modules.actor import Actor
from ..modules.heads import TwoHotHead

__all__ = ["ActorLoss", "DebiasedPercentileNorm"]


class DebiasedPercentileNorm(PercentileValueNorm):
    """TorchRL's ``PercentileValueNorm`` with zero-debiasing (the official ``Normalize(debias=True)``).

    Not the official setting: the official config sets ``retnorm: {debias: False}``, which TorchRL's
    ``PercentileValueNorm`` matches. There the percentile EMAs start at 0, so for the first few hundred
    updates (rate 0.01) the scale sits at its floor of 1 and advantages come out large. The tuned
    ``vector_small`` preset turns debiasing on (``agent.return_norm_debias``): its CartPole runs make only
    ~1200 updates, a quarter of which would otherwise run at the floor. Debiasing divides the EMAs by
    ``max(rate, c)`` with ``c ← (1 − rate)·c + rate`` (the mass of real data in the average)::

        S = max(min_scale, (EMA(P95) − EMA(P5)) / max(rate, c))

    Examples:
        >>> norm = DebiasedPercentileNorm(rate=0.01)
        >>> norm.update(torch.linspace(0.0, 100.0, 101).unsqueeze(-1))
        >>> norm.scale()  # one batch: exactly its P95 − P5
        tensor([90.])
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.register_buffer("correction", torch.zeros(()))

    @torch.no_grad()
    def update(self, value_target: torch.Tensor) -> None:
        super().update(value_target)
        self.correction.lerp_(torch.ones_like(self.correction), self.rate)

    def scale(self) -> torch.Tensor:
        corr = self.correction.clamp_min(self.rate)
        return ((self.high - self.low) / corr).clamp_min(self.min_scale)


class ActorLoss(LossModule):
    """Policy loss on an imagined trajectory ``[N, H+1]`` (official ``imag_loss``, policy part).

    With ``v_t`` the critic's value, ``c_t`` the continue probability (discount included) and
    ``r_t`` the (possibly intrinsic-mixed) reward of arriving at state ``t``::

        R_t   = λ-return(r_{t+1}, v_{t+1}, c_{t+1}), R_H = v_H         (γ folded into c)
        w_t   = Π_{i≤t} c_i                                           (trajectory weight)
        S     = max(1, EMA(P95(R)) − EMA(P5(R)))                       (rate 0.01, TorchRL PercentileValueNorm;
                                                                        return_norm_debias=True: debiased EMAs)
        loss  = mean_t w_t · −(log π(a_t|s_t)·sg((R_t − v_t)/S) + η·H[π(·|s_t)]),   η = 3e-4

    Log-probabilities come from ``"policy"`` (the actor's distribution, written with its graph by
    :class:`~torchrl_dreamerxp.modules.Imagination`) when present, else from running the actor again.
    Writes ``"lambda_return"``, ``"weight"`` and ``"value_logits"`` (the critic's logits, with their
    gradient graph) into the imagined tensordict for :class:`CriticLoss`.
    Returns ``loss_actor`` plus ``entropy``, ``return_scale``, ``advantage`` diagnostics.

    Examples:
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead
        >>> actor, critic = Actor(6, 2, discrete=True, units=8, layers=1), TwoHotHead(6, 8, 1)
        >>> td = TensorDict({"feature": torch.randn(4, 3, 6), "reward": torch.ones(4, 3),
        ...     "continue": torch.ones(4, 3), "action": torch.eye(2)[torch.zeros(4, 3, dtype=torch.long)]}, [4, 3])
        >>> ActorLoss(actor, critic)(td)["loss_actor"].shape
        torch.Size([])
    """

    @dataclass
    class _AcceptedKeys:
        """Keys of the imagined trajectory; change them with :meth:`set_keys`."""

        feature: str = "feature"
        action: str = "action"
        reward: str = "reward"
        cont: str = "continue"
        value: str = "value"
        lambda_return: str = "lambda_return"
        weight: str = "weight"
        value_logits: str = "value_logits"
        policy: str = "policy"

    default_keys = _AcceptedKeys
    tensor_keys: _AcceptedKeys

    def __init__(self, actor: Actor, critic: TwoHotHead, *, lmbda=0.95, entropy_coef=3e-4,
                 return_norm_rate=0.01, return_norm_limit=1.0, return_norm_debias=False):
        super().__init__()
        self.actor = actor
        # the critic is only read here (no gradient): keep it out of this loss's parameters
        self.__dict__["critic"] = critic
        self.lmbda, self.entropy_coef = lmbda, entropy_coef
        norm = DebiasedPercentileNorm if return_norm_debias else PercentileValueNorm  # official: no debiasing
        self.return_norm = norm(shape=1, quantiles=(0.05, 0.95), rate=return_norm_rate, min_scale=return_norm_limit)

    def _forward_value_estimator_keys(self, **kwargs) -> None:
        pass

    def forward(self, tensordict: TensorDictBase) -> TensorDict:
        k = self.tensor_keys
        feat = tensordict.get(k.feature)
        # the critic's logits keep their graph: CriticLoss regresses these same logits instead of
        # running the critic over the N·(H+1) imagined states again
        value_logits = self.critic(feat.detach())
        with torch.no_grad():
            value = self.critic.predict(value_logits.detach())
            reward, cont = tensordict.get(k.reward), tensordict.get(k.cont)
            ret = lambda_returns(reward[:, 1:], value[:, 1:], cont[:, 1:], value[:, -1], gamma=1.0, lmbda=self.lmbda)
            weight = torch.cumprod(cont, 1)
            self.return_norm.update(ret.reshape(-1, 1))
            scale = self.return_norm.scale()
            adv = (ret - value[:, :-1]) / scale
        action = tensordict.get(k.action)[:, :-1]
        policy = tensordict.get(k.policy, None)  # Imagination's actor output, still attached to its graph
        if policy is None:
            logp, ent = self.actor.log_prob(feat[:, :-1], action)
        else:
            logp, ent = self.actor.log_prob_entropy(policy[:, :-1], action)
        loss = (weight[:, :-1] * -(logp * adv + self.entropy_coef * ent)).mean()
        tensordict.set(k.value, value)
        tensordict.set(k.value_logits, value_logits)
        tensordict.set(k.lambda_return, torch.cat([ret, value[:, -1:]], 1))
        tensordict.set(k.weight, weight)
        return TensorDict(
            {
                "loss_actor": loss,
                "entropy": ent.detach().mean(),
                "return_scale": scale.squeeze(),
                "advantage": adv.mean(),
                "imagined_return": ret.mean(),
            },
            batch_size=[],
        )
