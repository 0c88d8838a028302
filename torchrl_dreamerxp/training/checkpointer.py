"""A run's checkpoints: where they are, when one is due, saving one and resuming from the newest."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch

from .checkpoint import latest_checkpoint, load_checkpoint, read_counters, save_checkpoint
from .run_state import RunState

__all__ = ["Checkpointer"]


class Checkpointer:
    """Owns ``run_dir/checkpoints/`` and the replay's scratch folder for one rank of a run.

    - ``resume=True`` picks the newest checkpoint that passes its manifest (:attr:`last`); a resumed run keeps
      that checkpoint's replay capacity (:meth:`replay_capacity`).
    - :meth:`scratch_dir` is emptied: memory-mapped replay files of a crashed process are stale (a resume
      refills the replay from the checkpoint).
    - :meth:`restore` loads the learner, optimizers, λ scheduler, replay, RNG and the :class:`RunState`
      (counters, the eval/log schedule, the checkpointed round); under ``torchrun`` each rank then reseeds.
    - :meth:`due` / :meth:`save`: a checkpoint every ``every`` env steps and at the last one, written by rank
      0 only (atomically; the newest ``keep`` stay). It is taken right after a round is collected and
      before its updates, so a resumed run redoes exactly those updates from the same state.

    Examples:
        >>> import tempfile
        >>> ckpt = Checkpointer(Path(tempfile.mkdtemp()), every=500, keep=2, resume=True)
        >>> ckpt.last is None, ckpt.replay_capacity(1000), ckpt.due(RunState(env_steps=512), total=2000)
        (True, 1000, True)
    """

    def __init__(self, run_dir: Path, *, every: int, keep: int, resume: bool, rank: int = 0, world_size: int = 1):
        self.directory = Path(run_dir) / "checkpoints"
        self.scratch = Path(run_dir) / ("replay_scratch" if world_size == 1 else f"replay_scratch_rank{rank}")
        self.every, self.keep, self.rank, self.world_size = every, keep, rank, world_size
        self.last = latest_checkpoint(self.directory) if resume else None
        self.next_due = every

    def replay_capacity(self, default: int) -> int:
        """The resumed checkpoint's replay capacity, or ``default`` for a fresh run."""
        return read_counters(self.last)["replay_capacity"] if self.last is not None else default

    def scratch_dir(self) -> Path:
        """An empty folder for the memory-mapped replay of this rank."""
        shutil.rmtree(self.scratch, ignore_errors=True)
        return self.scratch

    def restore(self, learner, replay, state: RunState, seed: int) -> bool:
        """Loads :attr:`last` into ``learner``, ``replay`` and ``state``; ``False`` (nothing loaded) without one."""
        if self.last is None:
            return False
        state.load_state_dict(load_checkpoint(self.last, learner, replay))  # every rank: rank 0's model and replay
        self._schedule(state.env_steps)
        if self.world_size > 1:  # ranks sample their own actions and slices
            torch.manual_seed(seed + 7919 * self.rank + state.env_steps)
        print(f"resumed from {self.last} at env step {state.env_steps}")
        return True

    def due(self, state: RunState, total: int) -> bool:
        return state.env_steps >= self.next_due or state.env_steps >= total

    def save(self, learner, replay, state: RunState) -> int:
        """Checkpoint ``state`` (rank 0) and schedule the next one; returns the checkpoint's size in bytes."""
        size = 0
        if self.rank == 0:
            path = save_checkpoint(self.directory, learner, replay, state.state_dict(), keep=self.keep)
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        self._schedule(state.env_steps)
        return size

    def latest(self) -> Path | None:
        """The newest good checkpoint on disk now (named when a run has to stop)."""
        return latest_checkpoint(self.directory)

    def _schedule(self, env_steps: int) -> None:
        self.next_due = (env_steps // self.every + 1) * self.every
