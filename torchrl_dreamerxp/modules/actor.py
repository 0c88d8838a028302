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

    def dist_params(self, feat):
        out = self.net(feat)
        if self.discrete:
            probs = (1.0 - self.unimix) * torch.softmax(out, -1) + self.unimix / self.action_dim
            return (probs,)
        mean, std = out.chunk(2, -1)
        std = (self.maxstd - self.minstd) * torch.sigmoid(std + 2.0) + self.minstd
        return torch.tanh(mean), std

    def _log_prob_entropy(self, params, action):
        if self.discrete:
            (probs,) = params
            logp = (action * torch.log(probs)).sum(-1)
            ent = -(probs * torch.log(probs)).sum(-1)
            return logp, ent
        dist = torch.distributions.Normal(*params)
        return dist.log_prob(action).sum(-1), dist.entropy().sum(-1)

    def forward(self, feat: torch.Tensor, deterministic: bool = False):
        params = self.dist_params(feat)
        with torch.no_grad():
            if self.discrete:
                (probs,) = params
                if deterministic:
                    action = nn.functional.one_hot(probs.argmax(-1), self.action_dim).to(probs.dtype)
                else:
                    action = sample_one_hot(probs)
            else:
                mean, std = params
                action = mean if deterministic else torch.normal(mean, std)
        logp, ent = self._log_prob_entropy(params, action)
        return action, logp, ent

    def log_prob(self, feat, action):
        return self._log_prob_entropy(self.dist_params(feat), action)
