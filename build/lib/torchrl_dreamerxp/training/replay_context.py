"""Replay context: write the posterior states of trained steps back into the replay storage."""
from __future__ import annotations

import torch
from tensordict import TensorDict
from torchrl.data import ReplayBuffer

__all__ = ["write_back_states"]


def write_back_states(replay: ReplayBuffer, index: torch.Tensor, deter: torch.Tensor, stoch: torch.Tensor) -> None:
    """Store ``deter``/``stoch`` of the steps at storage ``index`` (any matching leading shape).

    The next slice that starts right after one of these steps starts its RSSM from the stored state
    instead of zeros (official ``replay_context``). An in-place update: the storage's length and write
    cursor do not move (``set_cursor=False``; with the default, TorchRL counts the rows as new data).

    Examples:
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> rb = TensorDictReplayBuffer(storage=LazyTensorStorage(10))
        >>> _ = rb.extend(TensorDict({"deter": torch.zeros(4, 2), "stoch": torch.zeros(4, 1, 2)}, [4]))
        >>> write_back_states(rb, torch.tensor([1, 2]), torch.ones(2, 2), torch.ones(2, 1, 2))
        >>> len(rb), rb[:]["deter"][:, 0].tolist()
        (4, [0.0, 1.0, 1.0, 0.0])
    """
    index = index.reshape(-1)
    n = index.numel()
    states = TensorDict({"deter": deter.reshape(n, -1), "stoch": stoch.reshape(n, *stoch.shape[-2:])}, [n])
    replay.storage.set(index, states, set_cursor=False)
