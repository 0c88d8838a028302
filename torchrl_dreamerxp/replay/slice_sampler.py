"""Uniform sampling of contiguous windows of the storage (the DreamerV3 replay)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torchrl.data.replay_buffers.samplers import Sampler
from torchrl.data.replay_buffers.storages import Storage

__all__ = ["ContiguousSliceSampler"]


class ContiguousSliceSampler(Sampler):
    """Samples ``batch_size // slice_len`` windows of ``slice_len`` consecutive stored steps.

    Windows follow the write order of the storage and may run across an episode end into the next
    episode (``is_first`` resets the RSSM there), so episodes shorter than a slice are never dropped.
    They never straddle the write cursor of a full circular storage (newest → oldest). One stream of
    steps is assumed (one env per buffer, or each env's steps written in one block).

    Why not TorchRL's ``SliceSampler``: its slices stay inside one trajectory, so short episodes
    give short slices (or are dropped with ``strict_length``), unlike the official replay.

    Args:
        slice_len: steps per window (``T + context``).

    Examples:
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from tensordict import TensorDict
        >>> rb = TensorDictReplayBuffer(storage=LazyTensorStorage(100), sampler=ContiguousSliceSampler(4), batch_size=8)
        >>> rb.extend(TensorDict({"x": torch.arange(10)}, [10]))
        tensor(...)
        >>> s = rb.sample().reshape(2, 4)["x"]
        >>> bool(((s[:, 1:] - s[:, :-1]) == 1).all())
        True
    """

    def __init__(self, slice_len: int):
        super().__init__()
        self.slice_len = slice_len
        self._cursor = 0  # next write position, tracked from extend()

    def extend(self, index: torch.Tensor) -> None:
        index = torch.as_tensor(index)
        if index.numel():
            self._cursor = int(index.reshape(-1)[-1]) + 1

    def add(self, index: int) -> None:
        self._cursor = int(index) + 1

    def _starts(self, storage: Storage, num: int) -> torch.Tensor:
        size, capacity = len(storage), storage.max_size
        if size < self.slice_len:
            raise RuntimeError(f"the storage holds {size} steps, fewer than one slice of {self.slice_len}")
        if size < capacity:
            return torch.randint(0, size - self.slice_len + 1, (num,))
        offset = torch.randint(0, capacity - self.slice_len + 1, (num,))
        return (self._cursor % capacity + offset) % capacity

    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        if batch_size % self.slice_len:
            raise ValueError(f"batch_size {batch_size} is not a multiple of slice_len {self.slice_len}")
        starts = self._starts(storage, batch_size // self.slice_len)
        index = (starts[:, None] + torch.arange(self.slice_len)) % storage.max_size
        return index.reshape(-1), {}

    def _empty(self):
        self._cursor = 0

    def dumps(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), f"{path}/sampler.pt")

    def loads(self, path):
        self.load_state_dict(torch.load(f"{path}/sampler.pt"))

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": self._cursor}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._cursor = int(state_dict["cursor"])
