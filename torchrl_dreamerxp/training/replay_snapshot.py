"""A replay buffer's checkpoint that loads nothing executable and holds only the rows written so far.

TorchRL's ``ReplayBuffer.dumps`` writes the whole preallocated storage (a 100k-step CartPole replay is ~230 MB
however little of it is filled) and its ``loads`` unpickles ``prefetch.pkl`` and the sampler's state, so a
planted file runs code on resume. Here:

- ``storage/``: the storage's rows ``[0, len)`` (what the sampler reads), one raw file per entry, and
  ``storage.json`` with each entry's dtype and shape (streamed from a memory-mapped replay, no copy in memory);
- ``writer.json``: the writer's cursor and counts;
- ``sampler.pt``: the sampler's ``state_dict``, tensors and numbers only.

The ``.pt`` file is read with ``torch.load(weights_only=True)``, which refuses anything but tensors and
plain containers: a planted pickle raises :class:`UnsafeCheckpoint` instead of running.
"""
from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import torch
from tensordict import TensorDict, TensorDictBase

from .disk_space import require_replay_space

__all__ = ["save_replay", "load_replay", "write_rows", "safe_load", "UnsafeCheckpoint"]

_DTYPES = {str(d): d for d in (torch.float32, torch.float64, torch.float16, torch.bfloat16, torch.uint8, torch.int8,
                                torch.int16, torch.int32, torch.int64, torch.bool)}


class UnsafeCheckpoint(RuntimeError):
    """A checkpoint file that holds something other than tensors and plain values (refused, never run).

    Examples:
        >>> issubclass(UnsafeCheckpoint, RuntimeError)  # raised by safe_load (see its example)
        True
    """


def safe_load(path: Path):
    """``torch.load(path, weights_only=True)``: tensors, numbers, strings and containers only.

    Examples:
        >>> import os, tempfile
        >>> class Payload:
        ...     def __reduce__(self):
        ...         return (os.system, ("echo pwned",))
        >>> path = Path(tempfile.mkdtemp()) / "state.pt"
        >>> torch.save({"x": Payload()}, path)
        >>> safe_load(path)
        Traceback (most recent call last):
        ...
        torchrl_dreamerxp.training.replay_snapshot.UnsafeCheckpoint: .../state.pt holds an object that is not a tensor or a plain value (refused: loading it could run code): ...
    """
    try:
        return torch.load(path, weights_only=True, map_location="cpu")
    except pickle.UnpicklingError as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise UnsafeCheckpoint(f"{path} holds an object that is not a tensor or a plain value (refused: loading "
                               f"it could run code): {first}") from None


def write_rows(data: TensorDictBase | None, max_size: int, folder: Path) -> None:
    """``folder/storage/<entry>.bin`` (raw bytes of each entry of ``data``, rows first) and ``storage.json``.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> write_rows(TensorDict({"x": torch.ones(3, 2)}, [3]), 10, folder)
        >>> json.loads((folder / "storage.json").read_text())
        {'rows': 3, 'max_size': 10, 'entries': {'x': {'dtype': 'torch.float32', 'shape': [3, 2]}}}
    """
    (folder / "storage").mkdir(parents=True, exist_ok=True)
    entries = {}
    for key, tensor in (data.items(include_nested=True, leaves_only=True) if data is not None else ()):
        name = ".".join(key) if isinstance(key, tuple) else key
        tensor.contiguous().view(torch.uint8).numpy().tofile(folder / "storage" / f"{name}.bin")
        entries[name] = {"dtype": str(tensor.dtype), "shape": list(tensor.shape)}
    rows = data.shape[0] if data is not None else 0
    (folder / "storage.json").write_text(json.dumps({"rows": rows, "max_size": max_size, "entries": entries}))


def save_replay(replay, folder: Path) -> int:
    """Writes ``replay``'s filled rows, writer and sampler state under ``folder``; returns the bytes written.

    Examples:
        >>> import tempfile
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> replay = TensorDictReplayBuffer(storage=LazyTensorStorage(1000))
        >>> _ = replay.extend(TensorDict({"x": torch.arange(4.0)}, [4]))
        >>> folder = Path(tempfile.mkdtemp())
        >>> save_replay(replay, folder) < 4000  # 4 rows, not the 1000 preallocated
        True
        >>> restored = TensorDictReplayBuffer(storage=LazyTensorStorage(1000))
        >>> load_replay(restored, folder)
        >>> len(restored), restored[:4]["x"].tolist()
        (4, [0.0, 1.0, 2.0, 3.0])
    """
    folder = Path(folder)
    storage = replay.storage
    rows = len(storage)
    write_rows(storage._storage[:rows] if rows else None, storage.max_size, folder)
    (folder / "writer.json").write_text(json.dumps(replay._writer.state_dict()))
    torch.save(replay.sampler.state_dict(), folder / "sampler.pt")
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def _read_entry(file: Path, dtype: str, shape: list[int]) -> torch.Tensor:
    if dtype not in _DTYPES:
        raise UnsafeCheckpoint(f"{file}: unknown dtype {dtype!r}")
    expected = int(np.prod(shape)) * torch.empty((), dtype=_DTYPES[dtype]).element_size()
    if file.stat().st_size != expected:
        raise ValueError(f"{file} has {file.stat().st_size} bytes, expected {expected} ({dtype} {shape})")
    raw = np.memmap(file, dtype=np.uint8, mode="c") if expected else np.zeros(0, np.uint8)
    return torch.from_numpy(raw).view(_DTYPES[dtype]).reshape(shape)


def load_replay(replay, folder: Path) -> None:
    """Restores what :func:`save_replay` wrote into an empty ``replay`` of the same capacity (the round trip is
    :func:`save_replay`'s example).

    Examples:
        >>> import tempfile
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = save_replay(TensorDictReplayBuffer(storage=LazyTensorStorage(8)), folder)
        >>> load_replay(TensorDictReplayBuffer(storage=LazyTensorStorage(16)), folder)
        Traceback (most recent call last):
        ...
        ValueError: ...: the replay was saved with capacity 8, this one has 16
    """
    folder = Path(folder)
    saved = json.loads((folder / "storage.json").read_text())
    if saved["max_size"] != replay.storage.max_size:
        raise ValueError(f"{folder}: the replay was saved with capacity {saved['max_size']}, this one has "
                         f"{replay.storage.max_size}")
    rows = saved["rows"]
    if rows:
        data = TensorDict({}, [rows])
        for name, entry in saved["entries"].items():
            data.set(tuple(name.split(".")), _read_entry(folder / "storage" / f"{name}.bin", **entry))
        require_replay_space(replay, data)
        replay.storage.set(torch.arange(rows), data)  # copied into the (memory-mapped) storage
    replay._writer.load_state_dict(json.loads((folder / "writer.json").read_text()))
    replay.sampler.load_state_dict(safe_load(folder / "sampler.pt"))
