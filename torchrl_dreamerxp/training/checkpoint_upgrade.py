"""Convert checkpoints of the earlier pickled format into the current one, which loads nothing executable.

Run it only on checkpoints you trust: reading the old format unpickles them.
``python -m torchrl_dreamerxp.training.checkpoint_upgrade runs/<run>/checkpoints/step_*`` converts each folder
in place (the old files are replaced; the manifest is rewritten last). The old replay was TorchRL's whole
``dumps`` folder: its memory-mapped storage is read back with tensordict (no pickle) and its filled rows kept.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import torch
from tensordict import TensorDict

from .checkpoint import COUNTERS, numpy_rng_state, write_manifest
from .replay_snapshot import write_rows

__all__ = ["upgrade_checkpoint"]


def _old_replay_rows(replay: Path) -> tuple[dict, int, int]:
    storage = replay / "storage"
    meta = json.loads((storage / "storage_metadata.json").read_text())
    data = TensorDict.load_memmap(storage)
    rows = int(meta.get("len", data.shape[0]))
    return data[:rows].to_dict(), rows, int(data.shape[0])  # memory-mapped views: streamed, not copied


def upgrade_checkpoint(path: Path) -> None:
    """Rewrites one old-format checkpoint folder ``path`` in the current format (see the module docstring).

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / COUNTERS).write_text("{}")
        >>> upgrade_checkpoint(folder)  # doctest: +ELLIPSIS
        /...: already in the current format

    ``tests/test_reliability.py`` converts a real old checkpoint and resumes from it.
    """
    path = Path(path)
    if (path / COUNTERS).is_file():
        print(f"{path}: already in the current format")
        return
    state = torch.load(path / "state.pt", weights_only=False)  # the trusted, old, pickled format
    state["rng"]["numpy"] = numpy_rng_state(state["rng"]["numpy"])
    counters = state.pop("counters")
    old_replay, new_replay = path / "replay", path / "replay.new"
    data, rows, max_size = _old_replay_rows(old_replay)
    if "action" in data and "prev_action" not in data:  # the step layout's earlier name
        data["prev_action"] = data.pop("action")
    shutil.rmtree(new_replay, ignore_errors=True)
    write_rows(TensorDict(data, [rows]), max_size, new_replay)
    writer = old_replay / "writer"
    lanes, meta = writer / "lanes.json", writer / "metadata.json"
    if lanes.is_file():
        writer_state = json.loads(lanes.read_text())
    else:
        old = json.loads(meta.read_text()) if meta.is_file() else {}
        writer_state = {"_cursor": old.get("cursor", rows % max_size), "_write_count": old.get("write_count", rows)}
    (new_replay / "writer.json").write_text(json.dumps(writer_state))
    sampler = old_replay / "sampler" / "sampler.pt"
    torch.save(torch.load(sampler, weights_only=False) if sampler.is_file() else {}, new_replay / "sampler.pt")
    torch.save(state, path / "state.pt")
    (path / COUNTERS).write_text(json.dumps(counters))
    shutil.rmtree(old_replay)
    os.replace(new_replay, old_replay)
    write_manifest(path)
    print(f"{path}: converted ({rows} replay rows of {max_size})")


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+", type=Path, help="checkpoint folders (step_*) you trust")
    for path in parser.parse_args(argv).paths:
        upgrade_checkpoint(path)


if __name__ == "__main__":
    main()
