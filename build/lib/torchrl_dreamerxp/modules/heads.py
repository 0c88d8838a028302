"""Prediction heads on the features ``[h, z]``: two-hot (reward, critic) and continue."""
from __future__ import annotations

import torch
from torch import nn

from ..functional import symexp_bins, two_hot_decode, two_hot_encode
from .layers import MLP

__all__ = ["TwoHotHead", "ContinueHead", "two_hot_loss"]


def two_hot_loss(logits: torch.Tensor, target: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``logits [..., N]`` against the two-hot encoding of ``target [...]``.

    Examples:
        >>> two_hot_loss(torch.zeros(3), torch.tensor(0.5), torch.tensor([0.0, 1.0, 2.0]))  # uniform: log 3
        tensor(1.0986)
    """
    # float32 log-probabilities whatever the compute dtype (as the official output distributions)
    return -(two_hot_encode(target.detach(), bins) * torch.log_softmax(logits.float(), -1)).sum(-1)


class TwoHotHead(nn.Module):
    """MLP → 255 logits over symexp-spaced bins; output layer zero-initialised (predicts 0 at first).

    Used for the reward (1 hidden layer) and the critic (3 hidden layers).

    Examples:
        >>> head = TwoHotHead(6, units=8, layers=1)
        >>> head.predict(head(torch.randn(2, 6)))
        tensor([0., 0.], ...)
    """

    def __init__(self, feat_dim: int, units: int = 256, layers: int = 1, num_bins: int = 255, outscale: float = 0.0):
        super().__init__()
        self.net = MLP(feat_dim, units, layers, out=num_bins, outscale=outscale)
        self.register_buffer("bins", symexp_bins(num_bins), persistent=False)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def predict(self, logits: torch.Tensor) -> torch.Tensor:
        return two_hot_decode(logits, self.bins)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return two_hot_loss(logits, target, self.bins)


class ContinueHead(nn.Module):
    """MLP → one Bernoulli logit: the probability that the episode continues (times the discount).

    Examples:
        >>> head = ContinueHead(6, units=8, layers=1)
        >>> head(torch.zeros(3, 6)).shape
        torch.Size([3])
    """

    def __init__(self, feat_dim: int, units: int = 256, layers: int = 1):
        super().__init__()
        self.net = MLP(feat_dim, units, layers, out=1, outscale=1.0)

    def forward(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat).squeeze(-1)

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return nn.functional.binary_cross_entropy_with_logits(logits.float(), target, reduction="none")
