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
    steps is assumed, or with ``lanes > 1`` one stream per lane as :class:`LaneWriter` writes them (parallel
    envs): a window then lies inside one lane, chosen in proportion to the windows it holds.

    Why not TorchRL's ``SliceSampler``: its slices stay inside one trajectory, so short episodes
    give short slices (or are dropped with ``strict_length``), unlike the official replay.

    Args:
        slice_len: steps per window (``T + context``).
        lanes: equal circular regions of the storage, one stream of steps each (1: the whole storage).

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

    def __init__(self, slice_len: int, lanes: int = 1):
        super().__init__()
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.slice_len, self.lanes = slice_len, lanes
        self._empty()

    def extend(self, index: torch.Tensor) -> None:
        index = torch.as_tensor(index).reshape(-1)
        if not index.numel():
            return
        if self.lanes == 1:
            self._cursor = int(index[-1]) + 1
        else:  # the lane size is known once a storage is seen: keep the indices until then
            self._pending.append(index.clone())

    def add(self, index: int) -> None:
        self.extend(torch.tensor([index]))

    def _lane_state(self, storage: Storage) -> tuple[int, torch.Tensor, torch.Tensor]:
        """Lane size, rows ever written and next write position per lane (from the indices seen)."""
        lane_size = storage.max_size // self.lanes
        if self._pending:
            index = torch.cat(self._pending)
            self._pending = []
            lane = index // lane_size
            self._written += torch.bincount(lane, minlength=self.lanes)
            last = torch.full((self.lanes,), -1, dtype=torch.long).scatter_reduce(
                0, lane, torch.arange(index.numel()), "amax")  # the newest write of each lane
            seen = last >= 0
            self._lane_cursor[seen] = index[last[seen]] % lane_size + 1
        return lane_size, self._written, self._lane_cursor

    def _starts(self, storage: Storage, num: int) -> torch.Tensor:
        size, capacity = len(storage), storage.max_size
        if size < self.slice_len:
            raise RuntimeError(f"the storage holds {size} steps, fewer than one slice of {self.slice_len}")
        if size < capacity:
            return torch.randint(0, size - self.slice_len + 1, (num,))
        offset = torch.randint(0, capacity - self.slice_len + 1, (num,))
        return (self._cursor % capacity + offset) % capacity

    def _lane_windows(self, storage: Storage, num: int) -> torch.Tensor:
        lane_size, written, cursor = self._lane_state(storage)
        filled = written.clamp(max=lane_size)
        windows = (filled - self.slice_len + 1).clamp(min=0)
        if not windows.sum():
            raise RuntimeError(f"no lane holds one slice of {self.slice_len} steps yet (filled: {filled.tolist()})")
        lane = torch.multinomial(windows.double(), num, replacement=True)
        offset = (torch.rand(num, dtype=torch.double) * windows[lane]).long()
        # a full lane is circular: its oldest step sits at its write cursor
        oldest = torch.where(filled[lane] == lane_size, cursor[lane] % lane_size, 0)
        within = (oldest + offset)[:, None] + torch.arange(self.slice_len)
        return (lane * lane_size)[:, None] + within % lane_size

    def sample(self, storage: Storage, batch_size: int) -> tuple[torch.Tensor, dict]:
        if batch_size % self.slice_len:
            raise ValueError(f"batch_size {batch_size} is not a multiple of slice_len {self.slice_len}")
        num = batch_size // self.slice_len
        if self.lanes > 1:
            return self._lane_windows(storage, num).reshape(-1), {}
        starts = self._starts(storage, num)
        index = (starts[:, None] + torch.arange(self.slice_len)) % storage.max_size
        return index.reshape(-1), {}

    def _empty(self):
        self._cursor = 0
        self._pending: list[torch.Tensor] = []
        self._written = torch.zeros(self.lanes, dtype=torch.long)
        self._lane_cursor = torch.zeros(self.lanes, dtype=torch.long)

    def dumps(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        torch.save(self.state_dict(), f"{path}/sampler.pt")

    def loads(self, path):
        self.load_state_dict(torch.load(f"{path}/sampler.pt"))

    def state_dict(self) -> dict[str, Any]:
        state = {"cursor": self._cursor}
        if self.lanes > 1:
            pending = torch.cat(self._pending) if self._pending else torch.empty(0, dtype=torch.long)
            state.update(written=self._written.clone(), lane_cursor=self._lane_cursor.clone(), pending=pending)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._cursor = int(state_dict["cursor"])
        if self.lanes > 1:
            self._written, self._lane_cursor = state_dict["written"].clone(), state_dict["lane_cursor"].clone()
            self._pending = [state_dict["pending"].clone()] if state_dict["pending"].numel() else []
