"""Specs every native env here shares: a scalar float reward and gymnasium-style end flags."""
from __future__ import annotations

import torch
from torchrl.data import Categorical, Composite, Unbounded

__all__ = ["reward_spec", "done_spec"]


def reward_spec(device=None) -> Unbounded:
    """``[1]`` float32 reward.

    Examples:
        >>> reward_spec().shape
        torch.Size([1])
    """
    return Unbounded((1,), dtype=torch.float32, device=device)


def done_spec(device=None) -> Composite:
    """``done``, ``terminated`` (the episode really ended) and ``truncated`` (cut by a time limit), each ``[1]`` bool.

    Examples:
        >>> sorted(done_spec().keys())
        ['done', 'terminated', 'truncated']
    """
    flag = Categorical(2, (1,), dtype=torch.bool, device=device)
    return Composite(done=flag.clone(), terminated=flag.clone(), truncated=flag.clone(), shape=())
