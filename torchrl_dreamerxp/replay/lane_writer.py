"""One time lane per env: parallel envs write their steps into separate circular regions of the storage."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from tensordict import TensorDictBase
from torchrl.data.replay_buffers.writers import Writer

__all__ = ["LaneWriter"]


class LaneWriter(Writer):
    """Writes the steps of env ``e`` into lane ``e``: storage rows ``[e·L, (e+1)·L)``, circular within the lane.

    With several envs collected side by side, a single write stream would interleave their steps, and a
    contiguous slice would run from one env's steps into another's. Lanes keep each env's steps in time
    order, so :class:`~torchrl_dreamerxp.replay.ContiguousSliceSampler` (given the same ``lanes``) can
    cut slices inside one lane. Each written row names its lane in ``lane_key``; that entry is not stored.

    Why not a 2-D TorchRL storage (``ndim=2``): it needs the same number of rows from every env per write,
    and the DreamerV3 layout adds a reset row at each episode start, so the envs' row counts differ.

    Args:
        lanes: number of lanes (envs); the storage's ``max_size`` must be a multiple of it.
        lane_key: entry of the written rows holding each row's lane (an integer in ``[0, lanes)``).

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> rb = TensorDictReplayBuffer(storage=LazyTensorStorage(8), writer=LaneWriter(2))
        >>> rb.extend(TensorDict({"x": torch.arange(3), "lane": torch.tensor([0, 1, 0])}, [3]))
        tensor([0, 4, 1])
        >>> rb.extend(TensorDict({"x": torch.arange(3, 6), "lane": torch.tensor([1, 1, 0])}, [3]))
        tensor([5, 6, 2])
    """

    def __init__(self, lanes: int, lane_key: str = "lane"):
        super().__init__()
        if lanes < 1:
            raise ValueError(f"lanes must be >= 1, got {lanes}")
        self.lanes, self.lane_key = lanes, lane_key
        self._empty()

    def _lane_size(self) -> int:
        capacity = self._storage.max_size
        if capacity % self.lanes:
            raise ValueError(f"the storage size {capacity} is not a multiple of lanes={self.lanes}")
        return capacity // self.lanes

    def extend(self, data: TensorDictBase) -> torch.Tensor:
        if self.lane_key not in data.keys():
            raise KeyError(f"LaneWriter needs each row's lane in {self.lane_key!r}")
        lane = data[self.lane_key].reshape(-1).long()
        if lane.numel() and (lane.min() < 0 or lane.max() >= self.lanes):
            raise ValueError(f"lane ids must be in [0, {self.lanes}), got {lane.unique().tolist()}")
        lane_size = self._lane_size()
        index = torch.empty_like(lane)
        for e in lane.unique().tolist():
            rows = (lane == e).nonzero().squeeze(1)
            pos = (self._cursor[e] + torch.arange(rows.numel())) % lane_size
            index[rows] = e * lane_size + pos
            self._cursor[e] = int(pos[-1]) + 1
            self._written[e] += rows.numel()
        self._write_count += lane.numel()
        rows_before = len(self._storage)
        self._storage.set(index, data.exclude(self.lane_key))  # also records the last cursor for dumps()
        # the storage reads rows [0, len): len must reach past the highest lane row written, not count rows
        self._storage._len = min(max(rows_before, int(index.max()) + 1), self._storage.max_size)
        for entity in self._storage._attached_entities_iter():  # samplers that index rows as they are written
            entity.mark_update(index)
        return index

    def add(self, data: TensorDictBase) -> int:
        return int(self.extend(data.unsqueeze(0))[0])

    def _empty(self, empty_write_count: bool = True) -> None:
        self._cursor = [0] * self.lanes  # next write position inside each lane
        self._written = [0] * self.lanes  # rows ever written to each lane
        if empty_write_count:
            self._write_count = 0

    def state_dict(self) -> dict[str, Any]:
        return {"cursor": list(self._cursor), "written": list(self._written), "write_count": self._write_count}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._cursor, self._written = list(state_dict["cursor"]), list(state_dict["written"])
        self._write_count = int(state_dict["write_count"])

    def dumps(self, path):
        Path(path).mkdir(parents=True, exist_ok=True)
        (Path(path) / "lanes.json").write_text(json.dumps(self.state_dict()))

    def loads(self, path):
        self.load_state_dict(json.loads((Path(path) / "lanes.json").read_text()))
