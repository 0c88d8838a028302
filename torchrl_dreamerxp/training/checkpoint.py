"""Checkpoints: everything a run needs to continue (modules, optimizers, λ scheduler, replay, counters, RNG).

A checkpoint is a folder ``step_<env_step>/`` holding ``counters.json`` (the run state), ``state.pt``
(module, optimizer and scheduler tensors, RNG states), the replay's filled rows, writer and sampler under
``replay/`` (:mod:`.replay_snapshot`) and, written last, ``manifest.json`` with the size and SHA-1 of every
file. Nothing in it is unpickled: the ``.pt`` files load with ``torch.load(weights_only=True)``, so a planted
file is refused (:class:`~torchrl_dreamerxp.training.replay_snapshot.UnsafeCheckpoint`), never run. It is written under a
temporary name and renamed into place, so a crash mid-write leaves no half checkpoint under a real
name; the newest ``keep`` checkpoints are kept. Loading checks the manifest first: a checkpoint whose
files are missing, truncated or changed is reported and the previous one is used.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import random
import re
import shutil
import warnings
from pathlib import Path

import numpy as np
import torch

from .disk_space import require_free_space, tensor_bytes
from .replay_snapshot import UnsafeCheckpoint, load_replay, safe_load, save_replay

__all__ = ["save_checkpoint", "load_checkpoint", "load_networks", "latest_checkpoint", "loadable_checkpoint",
           "read_counters", "write_manifest",
           "verify_checkpoint", "CorruptCheckpoint", "LegacyCheckpoint", "UnsafeCheckpoint", "fingerprint"]

MANIFEST = "manifest.json"
COUNTERS = "counters.json"


class LegacyCheckpoint(RuntimeError):
    """A checkpoint in the pickled format of earlier versions: loading it as it is could run code, so it is
    refused; :mod:`torchrl_dreamerxp.training.checkpoint_upgrade` converts one you trust.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> torch.save({"counters": {"env_steps": 5}}, folder / "state.pt")  # the old format: no counters.json
        >>> read_counters(folder)
        Traceback (most recent call last):
        ...
        torchrl_dreamerxp.training.checkpoint.LegacyCheckpoint: ... python -m torchrl_dreamerxp.training.checkpoint_upgrade ...
    """


class CorruptCheckpoint(RuntimeError):
    """A checkpoint whose files do not match its manifest.

    Examples:
        >>> verify_checkpoint("/nonexistent")
        Traceback (most recent call last):
        ...
        torchrl_dreamerxp.training.checkpoint.CorruptCheckpoint: /nonexistent: no readable manifest.json ...
    """


def _digest(path: Path) -> str:
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def _files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.name != MANIFEST)


def save_checkpoint(directory: Path, learner, replay_buffer, counters: dict, keep: int = 3,
                    collection: dict | None = None) -> Path:
    """Writes ``directory/step_<env_step>/`` atomically and deletes all but the newest ``keep``.

    Examples:
        >>> import tempfile
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
        >>> from torchrl_dreamerxp.training import Learner
        >>> def learner():
        ...     wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        ...     feat = wm.rssm.feature_dim()
        ...     return Learner(wm, Actor(feat, 2, True, units=8, layers=1), TwoHotHead(feat, 8, 1), horizon=3)
        >>> replay = TensorDictReplayBuffer(storage=LazyTensorStorage(10))
        >>> _ = replay.extend(TensorDict({"x": torch.arange(4.0)}, [4]))
        >>> folder = Path(tempfile.mkdtemp())
        >>> source = learner()
        >>> path = save_checkpoint(folder, source, replay, {"env_steps": 100})
        >>> latest_checkpoint(folder) == path, read_counters(path)
        (True, {'env_steps': 100})
        >>> restored, restored_replay = learner(), TensorDictReplayBuffer(storage=LazyTensorStorage(10))
        >>> load_checkpoint(path, restored, restored_replay)
        {'env_steps': 100}
        >>> fingerprint(restored, restored_replay)["modules"] == fingerprint(source, replay)["modules"]
        True
    """
    directory = Path(directory)
    final = directory / f"step_{counters['env_steps']:09d}"
    tmp = directory / f".tmp_{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    state = _state(learner)
    if collection is not None:  # the record an exact resume replays (training/exact_resume.py)
        state["collection"] = collection
    storage = replay_buffer.storage
    replay_bytes = tensor_bytes(storage._storage[:len(storage)]) if len(storage) else 0
    try:
        require_free_space(directory, tensor_bytes(state) + replay_bytes, f"the checkpoint of env step "
                                                                           f"{counters['env_steps']}")
        tmp.mkdir(parents=True)
        _write(tmp, state, replay_buffer, counters)
    except (OSError, RuntimeError) as err:  # a full disk, most often (torch.save raises RuntimeError): say so
        shutil.rmtree(tmp, ignore_errors=True)
        previous = _complete_checkpoints(directory)
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err).splitlines()[0]
        raise OSError(getattr(err, "errno", None) or errno.EIO,
                      f"could not write the checkpoint of env step {counters['env_steps']} to {tmp} ({reason}); "
                      f"the previous checkpoint is intact: {previous[-1] if previous else 'none'}") from err
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    for old in _complete_checkpoints(directory)[:-keep] if keep > 0 else []:
        shutil.rmtree(old, ignore_errors=True)
    return final


def _complete_checkpoints(directory: Path) -> list[Path]:
    """Checkpoints of this format whose files have the sizes their manifest lists, oldest first (no hashing):
    what ``keep`` counts. Damaged or foreign ``step_*`` entries are left alone and count for nothing."""
    complete = []
    for path in sorted(directory.glob("step_*")):
        if re.fullmatch(r"step_\d{9}", path.name) and (path / COUNTERS).is_file():
            try:
                verify_checkpoint(path, hashes=False)
                complete.append(path)
            except (CorruptCheckpoint, KeyError, TypeError, AttributeError):  # also a manifest of the wrong shape
                continue
    return complete


def numpy_rng_state(state: tuple) -> dict:
    """numpy's ``get_state()`` tuple as tensors and numbers (loadable with ``weights_only=True``)."""
    name, keys, pos, has_gauss, cached = state
    return {"name": name, "keys": torch.from_numpy(np.asarray(keys).astype(np.int64)), "pos": int(pos),
            "has_gauss": int(has_gauss), "cached_gaussian": float(cached)}


def _state(learner) -> dict:
    return {
        "learner": learner.state_dict(),
        "training": learner.training_state_dict(),  # optimizers, λ scheduler
        "rng": {"torch": torch.get_rng_state(), "numpy": numpy_rng_state(np.random.get_state()), "python": random.getstate(),
                **({"cuda": torch.cuda.get_rng_state_all()} if torch.cuda.is_initialized() else {})},
    }


def _write(tmp: Path, state: dict, replay_buffer, counters: dict) -> None:
    (tmp / COUNTERS).write_text(json.dumps(counters))
    torch.save(state, tmp / "state.pt")
    save_replay(replay_buffer, tmp / "replay")
    write_manifest(tmp)


def write_manifest(folder: Path) -> None:
    """``manifest.json``: the size and SHA-1 of every file of a checkpoint folder, written last and synced.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "state.pt").write_bytes(b"abc")
        >>> write_manifest(folder)
        >>> json.loads((folder / MANIFEST).read_text())["state.pt"]["bytes"]
        3
    """
    manifest = {str(p.relative_to(folder)): {"bytes": p.stat().st_size, "sha1": _digest(p)} for p in _files(folder)}
    with open(folder / MANIFEST, "w") as f:
        json.dump(manifest, f)
        f.flush()
        os.fsync(f.fileno())


def verify_checkpoint(path: Path, hashes: bool = True) -> None:
    """Raises :class:`CorruptCheckpoint` unless every file matches ``manifest.json`` (its size, and its SHA-1
    unless ``hashes=False``).

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / "state.pt").write_bytes(b"abc")
        >>> _ = (folder / MANIFEST).write_text(json.dumps({"state.pt": {"bytes": 3, "sha1": _digest(folder / "state.pt")}}))
        >>> verify_checkpoint(folder)
        >>> _ = (folder / "state.pt").write_bytes(b"ab")
        >>> verify_checkpoint(folder)
        Traceback (most recent call last):
        ...
        torchrl_dreamerxp.training.checkpoint.CorruptCheckpoint: ...state.pt has 2 bytes, expected 3 (truncated?)
    """
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text())
    except (OSError, ValueError) as err:
        raise CorruptCheckpoint(f"{path}: no readable {MANIFEST} (an interrupted write?): {err}") from None
    for name, expected in manifest.items():
        file = path / name
        if not file.is_file():
            raise CorruptCheckpoint(f"{path}: {name} is missing")
        if file.stat().st_size != expected["bytes"]:
            raise CorruptCheckpoint(f"{path}: {name} has {file.stat().st_size} bytes, expected {expected['bytes']} (truncated?)")
        if hashes and _digest(file) != expected["sha1"]:
            raise CorruptCheckpoint(f"{path}: {name} does not match its checksum (corrupted)")


def loadable_checkpoint(directory: Path) -> tuple[Path | None, list[str]]:
    """The newest checkpoint that passes :func:`verify_checkpoint` and is of this format, and a line for each
    newer one rejected (its name and why).

    Examples:
        >>> loadable_checkpoint("/nonexistent")
        (None, [])
    """
    rejected = []
    for path in sorted(Path(directory).glob("step_*"), reverse=True):
        try:
            verify_checkpoint(path)
            read_counters(path)
            return path, rejected
        except (CorruptCheckpoint, LegacyCheckpoint, OSError, ValueError) as err:
            rejected.append(f"{path.name}: {err}")
    return None, rejected


def latest_checkpoint(directory: Path) -> Path | None:
    """The newest loadable checkpoint (:func:`loadable_checkpoint`); rejected ones are reported and skipped.

    Examples:
        >>> latest_checkpoint("/nonexistent") is None  # a run with no checkpoint yet (see save_checkpoint)
        True
    """
    path, rejected = loadable_checkpoint(directory)
    for reason in rejected:
        warnings.warn(f"skipping checkpoint {reason}; trying the previous one", stacklevel=2)
    return path


def read_counters(path: Path) -> dict:
    """The counters of a checkpoint (env steps, updates, replay capacity, ...) without loading it.

    Examples:
        >>> import tempfile
        >>> folder = Path(tempfile.mkdtemp())
        >>> _ = (folder / COUNTERS).write_text('{"env_steps": 5, "updates": 1}')
        >>> read_counters(folder)
        {'env_steps': 5, 'updates': 1}

    The round trip in the examples of :func:`save_checkpoint` uses it on a real checkpoint.
    """
    path = Path(path)
    if not (path / COUNTERS).is_file() and (path / "state.pt").is_file():
        raise LegacyCheckpoint(f"{path} is in the pickled checkpoint format of earlier versions, which is not "
                               f"loaded (a planted file could run code); if you trust it, convert it with "
                               f"python -m torchrl_dreamerxp.training.checkpoint_upgrade {path}")
    return json.loads((path / COUNTERS).read_text())


def load_checkpoint(path: Path, learner, replay_buffer, extras: dict | None = None) -> dict:
    """Restores the learner, optimizers, scheduler, replay and RNG in place; returns the counters. ``extras``
    receives the other entries of ``state.pt`` (``collection``: the exact-resume record), read in the same pass.

    Examples:
        >>> import tempfile
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
        >>> from torchrl_dreamerxp.training import Learner
        >>> def learner():
        ...     wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        ...     feat = wm.rssm.feature_dim()
        ...     return Learner(wm, Actor(feat, 2, True, units=8, layers=1), TwoHotHead(feat, 8, 1), horizon=3)
        >>> replay = TensorDictReplayBuffer(storage=LazyTensorStorage(10))
        >>> _ = replay.extend(TensorDict({"x": torch.arange(4.0)}, [4]))
        >>> path = save_checkpoint(Path(tempfile.mkdtemp()), learner(), replay, {"env_steps": 7})
        >>> restored_replay = TensorDictReplayBuffer(storage=LazyTensorStorage(10))
        >>> extras = {}
        >>> load_checkpoint(path, learner(), restored_replay, extras), len(restored_replay), extras
        ({'env_steps': 7}, 4, {})
    """
    try:
        counters = read_counters(path)
        state = safe_load(Path(path) / "state.pt")
        learner.load_state_dict(state["learner"])
        learner.load_training_state_dict(state["training"])
        load_replay(replay_buffer, Path(path) / "replay")
    except (UnsafeCheckpoint, LegacyCheckpoint):
        raise
    except (ValueError, KeyError, TypeError, RuntimeError) as err:  # files that match their manifest but not a run
        raise CorruptCheckpoint(f"{path}: cannot be loaded ({type(err).__name__}: {err})") from err
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    numpy_rng = rng["numpy"]
    np.random.set_state((numpy_rng["name"], numpy_rng["keys"].numpy().astype(np.uint32), numpy_rng["pos"],
                         numpy_rng["has_gauss"], numpy_rng["cached_gaussian"]))
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    if extras is not None:
        extras.update({k: v for k, v in state.items() if k not in ("learner", "training", "rng")})
    return counters


def load_networks(path: Path, **networks) -> None:
    """Loads networks from a checkpoint's learner state in place, by their names in the learner
    (``world_model``, ``actor``, ``critic``): for evaluating, rolling out or probing a run's model
    without its optimizers and replay.

    Examples:
        >>> import tempfile
        >>> from torchrl_dreamerxp.modules import Actor
        >>> saved, loaded = Actor(6, 2, True, units=8, layers=1), Actor(6, 2, True, units=8, layers=1)
        >>> folder = Path(tempfile.mkdtemp())
        >>> torch.save({"learner": {f"actor.{k}": v for k, v in saved.state_dict().items()}}, folder / "state.pt")
        >>> _ = (folder / COUNTERS).write_text("{}")
        >>> load_networks(folder, actor=loaded)
        >>> all(torch.equal(a, b) for a, b in zip(saved.parameters(), loaded.parameters()))
        True
    """
    read_counters(path)  # refuses the pickled format of earlier versions
    state = safe_load(Path(path) / "state.pt")["learner"]
    for name, net in networks.items():
        prefix = f"{name}."
        net.load_state_dict({k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)})


def _hash_into(h, value) -> None:
    if isinstance(value, torch.Tensor):
        h.update(str((value.dtype, tuple(value.shape))).encode())
        h.update(value.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes() if value.numel() else b"")
    elif isinstance(value, dict):
        for key in sorted(value, key=str):
            h.update(str(key).encode())
            _hash_into(h, value[key])
    elif isinstance(value, (list, tuple)):
        for item in value:
            _hash_into(h, item)
    elif isinstance(value, np.ndarray):
        h.update(value.tobytes())
    else:
        h.update(repr(value).encode())


def fingerprint(learner, replay_buffer) -> dict[str, str]:
    """SHA-1 of each part of a run's state, to check that a resume restored exactly what was saved.

    Parts: ``modules`` (every parameter and buffer), ``training`` (optimizers, λ scheduler),
    ``replay`` (every stored step), ``sampler`` (e.g. the trajectory priorities), ``rng``
    (torch, numpy and Python generators) and ``replay_rows`` (the number of stored steps, not a hash).
    The round trip in the examples of :func:`save_checkpoint` uses it.

    Examples:
        >>> from tensordict import TensorDict
        >>> from torchrl.data import LazyTensorStorage, TensorDictReplayBuffer
        >>> from torchrl_dreamerxp.modules import Actor, TwoHotHead, WorldModel
        >>> from torchrl_dreamerxp.training import Learner
        >>> def learner():
        ...     wm = WorldModel(action_dim=2, obs_dim=3, deter=16, hidden=8, classes=4, stoch=4, units=8, blocks=4)
        ...     feat = wm.rssm.feature_dim()
        ...     return Learner(wm, Actor(feat, 2, True, units=8, layers=1), TwoHotHead(feat, 8, 1), horizon=3)
        >>> replay = TensorDictReplayBuffer(storage=LazyTensorStorage(10))
        >>> _ = replay.extend(TensorDict({"x": torch.arange(4.0)}, [4]))
        >>> source = learner()
        >>> before = fingerprint(source, replay)
        >>> with torch.no_grad():
        ...     _ = source.critic.net[0].weight.add_(1.0)
        >>> after = fingerprint(source, replay)
        >>> before["modules"] != after["modules"], before["replay"] == after["replay"]
        (True, True)
    """
    def sha(value):
        h = hashlib.sha1()
        _hash_into(h, value)
        return h.hexdigest()

    storage = replay_buffer.storage
    rows = len(storage)
    stored = storage.get(torch.arange(rows)) if rows else None
    return {
        "modules": sha(dict(learner.state_dict())),
        "training": sha(learner.training_state_dict()),
        "replay": sha({k: v for k, v in stored.items(True, True)} if stored is not None else {}),
        "sampler": sha(replay_buffer.sampler.state_dict()),
        "rng": sha([torch.get_rng_state(), np.random.get_state()[1], random.getstate()]),
        "replay_rows": str(rows),
    }
