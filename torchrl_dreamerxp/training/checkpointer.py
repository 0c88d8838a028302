"""A run's checkpoints: where they are, when one is due, saving one and resuming from the newest."""
from __future__ import annotations

import shutil
from pathlib import Path

import torch
import yaml
from omegaconf import OmegaConf

from .checkpoint import latest_checkpoint, load_checkpoint, loadable_checkpoint, read_counters, save_checkpoint
from .config_schema import flat_keys
from .run_state import RunState

__all__ = ["Checkpointer", "ResumeError", "RESUME_MAY_CHANGE"]

#: keys a resumed run may change (``steps`` to extend it, how it reports, how fast it runs); any other key
#: that differs from the run's ``config.yaml`` is refused unless ``resume_allow_changes=true``
RESUME_MAY_CHANGE = ("steps", "resume", "resume_allow_changes", "exact_resume", "run_dir", "progress", "threads",
                     "compile", "device",
                     "eval.", "logger.", "checkpoint_every", "checkpoint_keep", "max_nonfinite_updates",
                     "collector.ray_address")


class ResumeError(RuntimeError):
    """``resume=true`` cannot continue this run; nothing in the run directory was changed.

    Examples:
        >>> issubclass(ResumeError, RuntimeError)  # raised by Checkpointer (see its examples)
        True
    """


class Checkpointer:
    """Owns ``run_dir/checkpoints/`` and the replay's scratch folder for one rank of a run.

    - ``resume=True`` picks the newest checkpoint that passes its manifest and loads (:attr:`last`); a resumed
      run keeps that checkpoint's replay capacity (:meth:`replay_capacity`). With none loadable it stops with a
      :class:`ResumeError` listing each rejected checkpoint, unless the run has nothing yet (no checkpoint,
      no logged row): then it says so and starts from the beginning. :meth:`check_config` refuses a resume
      whose env, model, seed, ... differ from the run's ``config.yaml``.
    - :meth:`scratch_dir` is emptied: memory-mapped replay files of a crashed process are stale (a resume
      refills the replay from the checkpoint).
    - :meth:`restore` loads the learner, optimizers, λ scheduler, replay, RNG and the :class:`RunState`
      (counters, the eval/log schedule, the checkpointed round); under ``torchrun`` each rank then reseeds.
    - :meth:`due` / :meth:`save`: a checkpoint every ``every`` env steps and at the last one, written by rank
      0 only (atomically; the newest ``keep`` stay). It is taken right after a round is collected and
      before its updates, so a resumed run redoes exactly those updates from the same state.

    Examples:
        >>> import tempfile
        >>> ckpt = Checkpointer(Path(tempfile.mkdtemp()), every=500, keep=2, resume=True)  # doctest: +ELLIPSIS
        resume=true: ... holds no checkpoint yet; starting the run from the beginning
        >>> ckpt.last is None, ckpt.replay_capacity(1000), ckpt.due(RunState(env_steps=512), total=2000)
        (True, 1000, True)
    """

    def __init__(self, run_dir: Path, *, every: int, keep: int, resume: bool, rank: int = 0, world_size: int = 1):
        self.directory = Path(run_dir) / "checkpoints"
        self.scratch = Path(run_dir) / ("replay_scratch" if world_size == 1 else f"replay_scratch_rank{rank}")
        self.every, self.keep, self.rank, self.world_size = every, keep, rank, world_size
        self.run_dir = Path(run_dir)
        self.last = self._resume_point() if resume else None
        self.collection: dict | None = None  # the exact-resume record of the checkpoint restored
        self.next_due = every

    def _resume_point(self) -> Path | None:
        """The newest loadable checkpoint; a :class:`ResumeError` listing every rejected one when none loads
        and the run has checkpoints or logs to lose; ``None`` (said) for a run with nothing yet."""
        path, rejected = loadable_checkpoint(self.directory)
        if path is not None:
            return path
        found = list(self.directory.glob("step_*"))
        logs = [p.name for p in (self.run_dir / "eval.csv", self.run_dir / "metrics.jsonl")
                if p.is_file() and len(p.read_text().splitlines()) > (p.suffix == ".csv")]
        if found or logs:
            raise ResumeError(
                f"resume=true, but no checkpoint in {self.directory} can be loaded; nothing was changed.\n  "
                + "\n  ".join(rejected or ["(no step_* checkpoint)"])
                + (f"\n  logs of the earlier run: {', '.join(logs)}" if logs else "")
                + "\nFix or convert a listed checkpoint, or start over in another run_dir (resume=false).")
        print(f"resume=true: {self.directory} holds no checkpoint yet; starting the run from the beginning")
        return None

    def check_config(self, cfg) -> None:
        r"""Refuse (:class:`ResumeError`) a resumed run whose config differs from the run's ``config.yaml`` in any
        key outside :data:`RESUME_MAY_CHANGE`, unless ``cfg.resume_allow_changes``; the differences are listed.
        Keys that only one of the two has (added or removed by another version of this library) are not compared.

        Examples:
            >>> import tempfile
            >>> run = Path(tempfile.mkdtemp())
            >>> _ = (run / "config.yaml").write_text("env: gym/CartPole-v1\nseed: 0\nsteps: 100\n")
            >>> ckpt = Checkpointer(run, every=10, keep=1, resume=False)
            >>> ckpt.last = run  # as if resuming from a checkpoint of this run
            >>> ckpt.check_config(OmegaConf.create({"env": "gym/CartPole-v1", "seed": 0, "steps": 200}))
            >>> ckpt.check_config(OmegaConf.create({"env": "gym/Pendulum-v1", "seed": 1, "steps": 200}))
            Traceback (most recent call last):
            ...
            torchrl_dreamerxp.training.checkpointer.ResumeError: resume=true with a config that differs from the run's ...
        """
        before = self._recorded_config()
        if before is None or cfg.get("resume_allow_changes", False):
            return
        now = flat_keys(OmegaConf.to_container(cfg, resolve=True))
        # keys on one side only came or went with a version of this library: not a change of this run
        changed = [f"{key}: {before[key]!r} -> {now[key]!r}" for key in sorted(set(before) & set(now))
                   if before[key] != now[key] and not key.startswith(RESUME_MAY_CHANGE)]
        if changed:
            raise ResumeError(f"resume=true with a config that differs from the run's {self.run_dir / 'config.yaml'} "
                              f"(its checkpoints were made with it); nothing was changed:\n  " + "\n  ".join(changed)
                              + "\nUndo these changes, or set resume_allow_changes=true to resume anyway.")

    def recorded(self, key: str, missing=None):
        r"""The value of ``key`` in the run's ``config.yaml`` when resuming from a checkpoint, else ``None``;
        ``missing`` when that config has no ``key`` (a run from before the key existed).

        Examples:
            >>> import tempfile
            >>> run = Path(tempfile.mkdtemp())
            >>> _ = (run / "config.yaml").write_text("precision: float32\n")
            >>> ckpt = Checkpointer(run, every=10, keep=1, resume=False)
            >>> ckpt.recorded("precision") is None  # a fresh run has nothing to keep
            True
            >>> ckpt.last = run  # as if resuming from a checkpoint of this run
            >>> ckpt.recorded("precision"), ckpt.recorded("model.name"), ckpt.recorded("model.name", missing="?")
            ('float32', None, '?')
        """
        recorded = self._recorded_config()
        return None if recorded is None else recorded.get(key, missing)

    def _recorded_config(self) -> dict | None:
        """The run's ``config.yaml`` as dotted keys when resuming from a checkpoint, else ``None``."""
        saved = self.run_dir / "config.yaml"
        if self.last is None or not saved.is_file():
            return None
        return flat_keys(yaml.safe_load(saved.read_text()) or {})

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
        extras: dict = {}
        state.load_state_dict(load_checkpoint(self.last, learner, replay, extras))  # every rank: rank 0's model, replay
        self.collection = extras.get("collection") if self.world_size == 1 else None
        self._schedule(state.env_steps)
        if self.world_size > 1:  # ranks sample their own actions and slices
            torch.manual_seed(seed + 7919 * self.rank + state.env_steps)
        print(f"resumed from {self.last} at env step {state.env_steps}")
        return True

    def due(self, state: RunState, total: int) -> bool:
        return state.env_steps >= self.next_due or state.env_steps >= total

    def save(self, learner, replay, state: RunState, collection: dict | None = None) -> int:
        """Checkpoint ``state`` (rank 0) and schedule the next one; returns the checkpoint's size in bytes.
        ``collection``: the record of an exact resume (:class:`~torchrl_dreamerxp.training.exact_resume.CollectionLog`)."""
        size = 0
        if self.rank == 0:
            path = save_checkpoint(self.directory, learner, replay, state.state_dict(), keep=self.keep,
                                   collection=collection)
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        self._schedule(state.env_steps)
        return size

    def latest(self) -> Path | None:
        """The newest good checkpoint on disk now (named when a run has to stop)."""
        return latest_checkpoint(self.directory)

    def _schedule(self, env_steps: int) -> None:
        self.next_due = (env_steps // self.every + 1) * self.every
