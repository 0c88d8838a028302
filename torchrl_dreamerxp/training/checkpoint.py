"""Checkpoints: everything a run needs to continue (modules, optimizer, replay, counters, RNG)."""
from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

import numpy as np
import torch

__all__ = ["save_checkpoint", "load_checkpoint", "latest_checkpoint", "read_counters"]


def save_checkpoint(directory: Path, learner, replay_buffer, counters: dict) -> Path:
    """Writes ``directory/step_<env_step>/`` atomically (temp dir, then rename)."""
    directory = Path(directory)
    final = directory / f"step_{counters['env_steps']:09d}"
    tmp = directory / f".tmp_{final.name}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    torch.save(
        {
            "learner": learner.state_dict(),
            "training": learner.training_state_dict(),  # optimizers, λ scheduler
            "counters": counters,
            "rng": {"torch": torch.get_rng_state(), "numpy": np.random.get_state(), "python": random.getstate()},
        },
        tmp / "state.pt",
    )
    replay_buffer.dumps(tmp / "replay")
    shutil.rmtree(final, ignore_errors=True)
    os.replace(tmp, final)
    return final


def latest_checkpoint(directory: Path) -> Path | None:
    found = sorted(Path(directory).glob("step_*"))
    return found[-1] if found else None


def read_counters(path: Path) -> dict:
    """The counters of a checkpoint (env steps, updates, replay capacity, ...) without loading it."""
    return torch.load(Path(path) / "state.pt", weights_only=False)["counters"]


def load_checkpoint(path: Path, learner, replay_buffer) -> dict:
    """Restores the learner, optimizer, replay and RNG in place; returns the counters."""
    state = torch.load(Path(path) / "state.pt", weights_only=False)
    learner.load_state_dict(state["learner"])
    learner.load_training_state_dict(state["training"])
    replay_buffer.loads(Path(path) / "replay")
    torch.set_rng_state(state["rng"]["torch"])
    np.random.set_state(state["rng"]["numpy"])
    random.setstate(state["rng"]["python"])
    return state["counters"]
