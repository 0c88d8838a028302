"""Disk space checked before a write whose size is known, so a full disk is a clear error, not a SIGBUS.

A memory-mapped replay file is allocated sparse: running out of space while its pages are written kills the
process with SIGBUS and no message. A checkpoint that fills the disk halfway is an opaque error. Both sizes
are known before the write, so the space is checked first.
"""
from __future__ import annotations

import errno
import shutil
from pathlib import Path

import torch
from tensordict import TensorDictBase

__all__ = ["DiskSpaceError", "nearest_existing", "require_free_space", "require_replay_space", "tensor_bytes"]

MARGIN = 1.05  # metadata, manifests and file-system overhead


class DiskSpaceError(OSError):
    """Not enough free space for a write; the message names the path, the bytes needed and the bytes free.

    Examples:
        >>> require_free_space("/", 1 << 62, "a very large file")
        Traceback (most recent call last):
        ...
        torchrl_dreamerxp.training.disk_space.DiskSpaceError: [Errno 28] a very large file needs ... MB at /, ... MB are free
    """


def nearest_existing(path: Path) -> Path:
    """``path`` or its nearest ancestor that exists (where a file system can be asked about ``path``).

    Examples:
        >>> nearest_existing("/tmp/not/made/yet")
        PosixPath('/tmp')
    """
    path = Path(path).absolute()
    while not path.exists():
        path = path.parent
    return path


def require_free_space(path: Path, needed_bytes: int, what: str) -> None:
    """Raises :class:`DiskSpaceError` unless the file system of ``path`` has ``needed_bytes`` (plus 5%) free.

    Examples:
        >>> require_free_space("/tmp/not/made/yet", 1024, "a small file")  # checked on the nearest existing folder
    """
    free = shutil.disk_usage(nearest_existing(path)).free
    if free < needed_bytes * MARGIN:
        raise DiskSpaceError(errno.ENOSPC, f"{what} needs {needed_bytes * MARGIN / 1e6:.1f} MB at {path}, "
                                           f"{free / 1e6:.1f} MB are free")


def tensor_bytes(value) -> int:
    """The bytes of every tensor in a nested state (dicts, lists, tuples, TensorDicts).

    Examples:
        >>> tensor_bytes({"a": torch.zeros(4), "b": [torch.zeros(2, dtype=torch.uint8), 3]})
        18
    """
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, TensorDictBase):
        return sum(tensor_bytes(t) for t in value.values(True, True))
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def require_replay_space(replay, rows) -> None:
    """Before the first write into an empty memory-mapped replay (``LazyMemmapStorage``): room for its whole
    capacity of rows like ``rows`` (a TensorDict), plus the buffer's ``index`` entry.

    Examples:
        >>> import tempfile
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyMemmapStorage, TensorDictReplayBuffer
        >>> replay = TensorDictReplayBuffer(storage=LazyMemmapStorage(1 << 40, scratch_dir=tempfile.mkdtemp()))
        >>> require_replay_space(replay, TensorDict({"x": torch.zeros(2, 4)}, [2]))
        Traceback (most recent call last):
        ...
        torchrl_dreamerxp.training.disk_space.DiskSpaceError: [Errno 28] the memory-mapped replay (1099511627776 steps) needs ...
    """
    from torchrl.data import LazyMemmapStorage

    storage = replay.storage
    if isinstance(storage, LazyMemmapStorage) and not storage.initialized and rows.numel():
        per_row = 8 + tensor_bytes(rows[0])
        require_free_space(storage.scratch_dir, storage.max_size * per_row,
                           f"the memory-mapped replay ({storage.max_size} steps)")
