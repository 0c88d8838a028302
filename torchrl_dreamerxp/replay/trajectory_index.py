"""Which trajectory each stored step belongs to, kept up to date as steps are written (and overwritten)."""
from __future__ import annotations

from typing import Any

import torch
from tensordict.utils import NestedKey
from torchrl.data.replay_buffers.storages import Storage

__all__ = ["TrajectoryIndex"]


def _read(storage: Storage, key: NestedKey, index) -> torch.Tensor | None:
    """The stored ``key`` at ``index``, reading that entry only (no other entry, e.g. pixels, is copied)."""
    data = getattr(storage, "_storage", None)  # TensorStorage: one TensorDict of all rows
    if data is not None and hasattr(data, "get"):
        value = data.get(key, None)
        return None if value is None else value[index]
    return storage.get(index).get(key, None)


class TrajectoryIndex:
    """Per-trajectory bookkeeping of a replay storage: indexed when steps are written, never re-read.

    The storage is seen as **streams**, each a circular sequence of steps in time order: the whole storage
    (one writer stream), the lanes of a :class:`~torchrl_dreamerxp.replay.LaneWriter` (``lanes``), or the
    env columns of a 2-D storage (``LazyTensorStorage(n, ndim=2)`` extended with ``[N, T]`` batches: one
    stream per env). A trajectory lives in one stream, on consecutive steps of it. A written step starts a
    new trajectory when its ``init_key`` is set, when the previous step of its stream had ``done_key`` set,
    or (with ``traj_key``) when its trajectory id differs from the previous step's.

    Per trajectory: ``ret``, the task return (sum of the finite ``reward_key`` values of all its steps ever
    written, the episode's return), ``stored_ret`` (the same over its steps still stored), ``length``
    (steps stored), ``start`` (its oldest stored step). Overwriting a step (a full circular storage) removes
    it from its trajectory's ``length`` and ``stored_ret``; a trajectory with no step left is retired and its
    id reused. A non-finite reward is counted in ``nonfinite_rewards`` and left out of both sums. Per step
    it keeps the trajectory id and reward (two numbers per storage row).

    Args:
        reward_key: stored reward summed into ``R``.
        init_key: stored flag of a trajectory's first step (``None``: not read).
        done_key: stored flag of a trajectory's last step (``None``: not read).
        traj_key: stored trajectory id (``None``: not read).
        lanes: lanes of a 1-D storage written by a ``LaneWriter`` (1: one stream).

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyTensorStorage
        >>> storage = LazyTensorStorage(4)
        >>> index = TrajectoryIndex(reward_key="reward", init_key="is_first", done_key=None)
        >>> storage.set(torch.arange(3), TensorDict({"reward": torch.ones(3), "is_first": torch.tensor([True, False, True])}, [3]))
        >>> index.write(storage, torch.arange(3))["new"].numel(), index.length[index.alive()].tolist()
        (2, [2, 1])
        >>> storage.set(torch.tensor([3, 0]), TensorDict({"reward": torch.ones(2), "is_first": torch.zeros(2, dtype=torch.bool)}, [2]))
        >>> _ = index.write(storage, torch.tensor([3, 0]))  # wraps: step 0 leaves the first trajectory
        >>> index.length[index.alive()].tolist(), index.ret[index.alive()].tolist()
        ([1, 3], [2.0, 3.0])
    """

    def __init__(self, *, reward_key: NestedKey, init_key: NestedKey | None, done_key: NestedKey | None,
                 traj_key: NestedKey | None = None, lanes: int = 1):
        if init_key is None and done_key is None and traj_key is None:
            raise ValueError("give at least one of init_key, done_key, traj_key: trajectories cannot be told apart")
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.reward_key, self.init_key, self.done_key, self.traj_key = reward_key, init_key, done_key, traj_key
        self.lanes = lanes
        self.layout: tuple[int, int, int] | None = None  # (storage ndim, streams, steps per stream)
        self.nonfinite_rewards = 0

    # -- layout ---------------------------------------------------------------------------------
    def _attach(self, storage: Storage) -> None:
        ndim = getattr(storage, "ndim", 1)
        if ndim == 1:
            if storage.max_size % self.lanes:
                raise ValueError(f"the storage size {storage.max_size} is not a multiple of lanes={self.lanes}")
            self.layout = (1, self.lanes, storage.max_size // self.lanes)
        elif ndim == 2:
            envs = storage._storage.shape[1] if hasattr(storage, "_storage") else storage.shape[1]
            self.layout = (2, envs, storage.max_size // envs)  # the storage's shape is [rows, envs]
        else:
            raise ValueError(f"storages of ndim {ndim} are not supported (1: steps, 2: [time, env])")
        streams, size = self.layout[1:]
        capacity = streams * size
        self.slot_traj = torch.full((capacity,), -1, dtype=torch.long)  # slot = stream·size + position
        self.slot_reward = torch.zeros(capacity)
        self.stream = torch.zeros(capacity, dtype=torch.long)  # per trajectory id (at most one per slot)
        self.start = torch.zeros(capacity, dtype=torch.long)  # position of its oldest stored step
        self.length = torch.zeros(capacity, dtype=torch.long)
        self.ret = torch.zeros(capacity, dtype=torch.double)
        self.stored_ret = torch.zeros(capacity, dtype=torch.double)
        self.ext_id = torch.full((capacity,), -1, dtype=torch.long)
        self.free = torch.arange(capacity - 1, -1, -1)  # a stack of unused ids, top at the end
        self.filled = torch.zeros(streams, dtype=torch.long)
        self.cursor = torch.zeros(streams, dtype=torch.long)  # next write position of each stream
        self.open = torch.full((streams,), -1, dtype=torch.long)  # trajectory being written in each stream
        self.open_done = torch.zeros(streams, dtype=torch.bool)

    @property
    def capacity(self) -> int:
        return 0 if self.layout is None else self.layout[1] * self.layout[2]

    def slots(self, index) -> torch.Tensor:
        """Storage index (flat, ``[n, 2]`` or a tuple of coordinates) → slot numbers."""
        ndim, _, size = self.layout
        if isinstance(index, tuple):
            index = torch.stack([torch.as_tensor(i) for i in index], -1)
        index = torch.as_tensor(index).long()
        if ndim == 2:
            index = index.reshape(-1, 2)
            return index[:, 1] * size + index[:, 0]
        return index.reshape(-1)

    def storage_index(self, slots: torch.Tensor):
        """Slot numbers → the storage's index (a tuple of coordinates for a 2-D storage)."""
        ndim, _, size = self.layout
        if ndim == 2:
            return slots % size, slots // size
        return slots

    # -- writes ---------------------------------------------------------------------------------
    def write(self, storage: Storage, index) -> dict[str, torch.Tensor]:
        """Index the steps just written at ``index`` (in write order). Returns the trajectory ids created
        (``"new"``), changed (``"changed"``: grown, shrunk or new) and retired (``"retired"``)."""
        if self.layout is None:
            self._attach(storage)
        _, streams, size = self.layout
        raw_index = tuple(index.unbind(-1)) if self.layout[0] == 2 else index
        slot = self.slots(index)
        n = slot.numel()
        keep = self._last_writes(slot)
        if not keep.all():  # a write longer than a stream overwrote its own first steps: those are gone
            # what the kept steps of those streams continue was lost: they start trajectories of their own
            self.open[(slot[~keep] // size).unique()] = -1
            index, slot, n = index[keep], slot[keep], int(keep.sum())
            raw_index = tuple(index.unbind(-1)) if self.layout[0] == 2 else index
        reward = self._column(storage, self.reward_key, raw_index, n, required=True).double()
        init = self._column(storage, self.init_key, raw_index, n)
        done = self._column(storage, self.done_key, raw_index, n)
        ext = self._column(storage, self.traj_key, raw_index, n)
        bad = ~torch.isfinite(reward)
        if bad.any():
            self.nonfinite_rewards += int(bad.sum())
            reward = torch.where(bad, torch.zeros_like(reward), reward)
        stream, pos = slot // size, slot % size
        order = torch.sort(stream, stable=True).indices  # time order kept inside each stream
        slot, stream, pos, reward = slot[order], stream[order], pos[order], reward[order]
        init, done, ext = (None if x is None else x[order] for x in (init, done, ext))
        evicted = self._evict(slot, pos)
        changed = [evicted]
        first_of_stream = torch.ones(n, dtype=torch.bool)
        first_of_stream[1:] = stream[1:] != stream[:-1]
        prev_done = torch.zeros(n, dtype=torch.bool)
        if done is not None:
            prev_done[1:] = done[:-1].bool()
        prev_done = torch.where(first_of_stream, self.open_done[stream], prev_done)
        starts = prev_done | (self.open[stream] < 0) & first_of_stream
        if init is not None:
            starts |= init.bool()
        if ext is not None:
            prev_ext = torch.empty_like(ext)
            prev_ext[1:] = ext[:-1]
            prev_ext = torch.where(first_of_stream, self.ext_id[self.open[stream].clamp(min=0)], prev_ext)
            starts |= ext != prev_ext
        # trajectories this write overwrote entirely (and does not continue) free their ids before new ones are taken
        continued = self.open[stream[first_of_stream & ~starts]]
        gone = evicted[(self.length[evicted] == 0) & ~torch.isin(evicted, continued)]
        self._retire(gone)
        new = self._allocate(int(starts.sum()))
        traj = self._assign(starts, stream, first_of_stream, new)
        if ext is not None:
            self._check_not_interleaved(ext[starts], new)
            self.ext_id[new] = ext[starts]
        self.slot_traj[slot] = traj
        self.slot_reward[slot] = reward.float()
        self.length += torch.bincount(traj, minlength=self.capacity)
        self.ret.index_add_(0, traj, reward)
        self.stored_ret.index_add_(0, traj, reward)
        self.stream[new], self.start[new] = stream[starts], pos[starts]
        last = torch.full((streams,), -1, dtype=torch.long).scatter_reduce(0, stream, torch.arange(n), "amax")
        hit = last >= 0
        written = torch.bincount(stream, minlength=streams)
        self.filled = (self.filled + written).clamp(max=size)
        self.cursor[hit] = (pos[last[hit]] + 1) % size
        self.open[hit] = traj[last[hit]]
        self.open_done[hit] = done[last[hit]].bool() if done is not None else False
        changed = torch.cat(changed + [traj]).unique()
        dead = changed[(self.length[changed] == 0) & ~torch.isin(changed, gone)]
        self._retire(dead)
        retired = torch.cat([gone, dead])
        return {"new": new, "changed": changed[self.length[changed] > 0], "retired": retired[~torch.isin(retired, new)]}

    @staticmethod
    def _last_writes(slot: torch.Tensor) -> torch.Tensor:
        """True for the last write to each slot within one write."""
        unique, inverse = torch.unique(slot, return_inverse=True)
        if unique.numel() == slot.numel():
            return torch.ones_like(slot, dtype=torch.bool)
        last = torch.full((unique.numel(),), -1, dtype=torch.long).scatter_reduce(
            0, inverse, torch.arange(slot.numel()), "amax")
        return torch.arange(slot.numel()) == last[inverse]

    def _column(self, storage, key, index, n: int, required: bool = False) -> torch.Tensor | None:
        if key is None:
            return None
        value = _read(storage, key, index)
        if value is None:
            if required:
                raise KeyError(f"the stored steps have no {key!r} entry (set reward_key to the stored reward)")
            return None
        if value.numel() != n:
            raise ValueError(
                f"each stored item holds {value.numel() // max(n, 1)} values of {key!r}, expected one step per item: "
                f"store steps (a [N, T] collector batch: LazyTensorStorage(size, ndim=2), or batch.reshape(-1) with "
                f"a traj_key), not whole rollouts")
        return value.reshape(n)

    def _evict(self, slot: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        """Overwritten steps leave their trajectories (a stream is overwritten oldest first)."""
        old = self.slot_traj[slot]
        was = old >= 0
        if not was.any():
            return old[:0]
        ids = old[was]
        self.length -= torch.bincount(ids, minlength=self.capacity)
        self.stored_ret.index_add_(0, ids, -self.slot_reward[slot[was]].double())
        last = torch.full((self.capacity,), -1, dtype=torch.long).scatter_reduce(
            0, ids, torch.arange(slot.numel())[was], "amax")
        hit = (last >= 0).nonzero().squeeze(1)
        self.start[hit] = (pos[last[hit]] + 1) % self.layout[2]
        self.slot_traj[slot[was]] = -1
        return hit

    def _allocate(self, k: int) -> torch.Tensor:
        if k > self.free.numel():
            raise RuntimeError("more live trajectories than storage slots (a bookkeeping error)")
        ids, self.free = self.free[self.free.numel() - k:].flip(0), self.free[: self.free.numel() - k]
        self.length[ids], self.ret[ids], self.stored_ret[ids], self.ext_id[ids] = 0, 0.0, 0.0, -1
        return ids

    def _assign(self, starts, stream, first_of_stream, new) -> torch.Tensor:
        """The trajectory of each written step: the stream's open one until its first start, then the new ones."""
        open_ids = self.open[stream]
        if not new.numel():
            return open_ids
        count = torch.cumsum(starts.long(), 0)  # starts up to and including each step
        seg_start = torch.where(first_of_stream, torch.arange(stream.numel()), torch.zeros_like(stream))
        seg_start = torch.cummax(seg_start, 0).values  # index of the first step of each step's stream run
        before = count[seg_start] - starts[seg_start].long()  # starts before the run
        within = count - before
        return torch.where(within > 0, new[(count - 1).clamp(min=0)], open_ids)

    def _check_not_interleaved(self, ext_new: torch.Tensor, new: torch.Tensor) -> None:
        alive = (self.length > 0).nonzero().squeeze(1)
        known = alive[~torch.isin(alive, new)]
        ids, counts = ext_new.unique(return_counts=True)
        clash = torch.isin(ext_new, self.ext_id[known]) | torch.isin(ext_new, ids[counts > 1])
        if clash.any():
            raise ValueError(
                f"trajectory ids {ext_new[clash][:5].tolist()} continue after other trajectories were written in "
                f"between: their steps are not consecutive in the storage (several envs flattened into one stream?). "
                f"Store [N, T] batches in LazyTensorStorage(size, ndim=2), or give each env a lane (LaneWriter)")

    def _retire(self, ids: torch.Tensor) -> None:
        if ids.numel():
            self.open[torch.isin(self.open, ids)] = -1
            self.free = torch.cat([self.free, ids.flip(0)])

    # -- reads ----------------------------------------------------------------------------------
    def alive(self) -> torch.Tensor:
        return self.length > 0

    def windows(self, traj: torch.Tensor, slice_len: int) -> torch.Tensor:
        """Slots ``[num, slice_len]``: from a uniform stored step of each ``traj``, ``slice_len`` steps of its
        stream, moved back where they would pass the stream's newest step."""
        size = self.layout[2]
        stream = self.stream[traj]
        filled = self.filled[stream]
        if (filled < slice_len).any():
            raise RuntimeError(f"a stream holds {int(filled.min())} steps, fewer than one slice of {slice_len}")
        offset = (torch.rand(traj.numel(), dtype=torch.double) * self.length[traj]).long()
        oldest = torch.where(filled == size, self.cursor[stream], torch.zeros_like(stream))
        age = (self.start[traj] + offset - oldest) % size  # steps after the stream's oldest
        age = age.clamp(max=filled - slice_len)
        pos = (oldest + age)[:, None] + torch.arange(slice_len)
        return stream[:, None] * size + pos % size

    # -- persistence ----------------------------------------------------------------------------
    _STATE = ("slot_traj", "slot_reward", "stream", "start", "length", "ret", "stored_ret", "ext_id", "free", "filled", "cursor",
              "open", "open_done")

    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"layout": None if self.layout is None else list(self.layout),
                                 "nonfinite_rewards": self.nonfinite_rewards}
        if self.layout is not None:
            state.update({k: getattr(self, k).clone() for k in self._STATE})
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.nonfinite_rewards = int(state["nonfinite_rewards"])
        self.layout = None if state["layout"] is None else tuple(int(x) for x in state["layout"])
        if self.layout is not None:
            for k in self._STATE:
                setattr(self, k, state[k].clone())
