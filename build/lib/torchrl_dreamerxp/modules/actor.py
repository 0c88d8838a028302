"""The DreamerV3 policy: unimix one-hot categorical (discrete) or bounded normal (continuous)."""
from __future__ import annotations

import torch
from torch import nn

from .layers import MLP
from .rssm import sample_one_hot

__all__ = ["Actor"]


class Actor(nn.Module):
    """Policy network on the features ``[h, z]`` (official ``policy`` head, output scale 0.01).

    - discrete: probabilities ``0.99·softmax(logits) + 0.01/n`` (1% unimix); samples are one-hot.
    - continuous (bounded normal): ``Normal(tanh(μ), σ)`` with ``σ = 0.9·sigmoid(s + 2) + 0.1``,
      log-probabilities and entropies summed over action dimensions. Samples are clipped to
      [−1, 1] only where they go to the environment (as the official env wrapper does).

    :meth:`forward` returns ``(action, log_prob, entropy)`` for a fresh sample; :meth:`log_prob`
    scores given actions.

    Examples:
        >>> actor = Actor(6, action_dim=3, discrete=True, units=8, layers=1)
        >>> action, logp, ent = actor(torch.zeros(2, 6))
        >>> action.sum(-1)
        tensor([1., 1.])
    """

    def __init__(self, feat_dim, action_dim, discrete, units=256, layers=3, unimix=0.01, minstd=0.1, maxstd=1.0, outscale=0.01):
        super().__init__()
        self.discrete, self.action_dim = discrete, action_dim
        self.unimix, self.minstd, self.maxstd = unimix, minstd, maxstd
        self.net = MLP(feat_dim, units, layers, out=action_dim if discrete else 2 * action_dim, outscale=outscale)

    def dist_params(self, feat: torch.Tensor) -> torch.Tensor:
        """The distribution as one tensor: probabilities ``[..., n]`` (discrete) or ``[mean, std]``
        ``[..., 2n]`` (continuous), so imagination can stack it and :class:`ActorLoss` reuse it."""
        out = self.net(feat).float()  # the distribution in float32 whatever the compute dtype
        if self.discrete:
            return (1.0 - self.unimix) * torch.softmax(out, -1) + self.unimix / self.action_dim
        mean, std = out.chunk(2, -1)
        std = (self.maxstd - self.minstd) * torch.sigmoid(std + 2.0) + self.minstd
        return torch.cat([torch.tanh(mean), std], -1)

    def log_prob_entropy(self, params: torch.Tensor, action: torch.Tensor):
        """``(log π(action), entropy)`` of the distribution ``params`` from :meth:`dist_params`."""
        if self.discrete:
            logp = (action * torch.log(params)).sum(-1)
            ent = -(params * torch.log(params)).sum(-1)
            return logp, ent
        dist = torch.distributions.Normal(*params.chunk(2, -1))
        return dist.log_prob(action).sum(-1), dist.entropy().sum(-1)

    @torch.no_grad()
    def sample(self, params: torch.Tensor, deterministic: bool = False) -> torch.Tensor:
        """An action of the distribution ``params``: a sample, or its mode when ``deterministic``."""
        if self.discrete:
            if deterministic:
                return nn.functional.one_hot(params.argmax(-1), self.action_dim).to(params.dtype)
            return sample_one_hot(params)
        mean, std = params.chunk(2, -1)
        return mean if deterministic else torch.normal(mean, std)

    def forward(self, feat: torch.Tensor, deterministic: bool = False):
        params = self.dist_params(feat)
        action = self.sample(params, deterministic)
        logp, ent = self.log_prob_entropy(params, action)
        return action, logp, ent

    def log_prob(self, feat, action):
        return self.log_prob_entropy(self.dist_params(feat), action)
