"""The progress bar and the periodic log of training scalars, with env steps and updates per second."""
from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Callable

from tqdm import tqdm

from .run_state import RunState

__all__ = ["Progress"]


class Progress:
    """A tqdm bar over env steps, and every ``every`` env steps the training scalars with throughput.

    Without the bar (``show=False``, as inside an experiment) each log also prints one plain progress line, so
    a run's ``stdout.log`` shows how far it is. With ``status_file`` every round rewrites a small JSON of the
    run's progress (env steps, total, last training return), which the experiment runner's bar reads.

    Examples:
        >>> from torchrl_dreamerxp.training.logging import NullLogger
        >>> state = RunState(next_log=16)
        >>> progress = Progress(total=32, every=16, state=state, show=False)
        >>> state.env_steps, state.updates = 16, 4
        >>> progress.train_metrics, progress.last_return = {"loss": 1.0}, 20.0
        >>> progress.round_done(16, state, NullLogger())  # doctest: +ELLIPSIS
        step 16/32 (50%)  updates 4  last return 20.0 ...
        True
        >>> state.next_log
        32
        >>> state.env_steps = 24
        >>> progress.round_done(8, state, NullLogger())  # not due
        False
        >>> state.env_steps = 32
        >>> state.next_log = 48  # as after a log at step 32 would be: the last step logs anyway
        >>> progress.round_done(8, state, NullLogger())  # doctest: +ELLIPSIS
        step 32/32 (100%) ...
        True
    """

    def __init__(self, total: int, every: int, state: RunState, show: bool = True, status_file: Path | None = None,
                 quiet: bool = False):
        self.every, self.total, self.show, self.status_file, self.quiet = every, total, show, status_file, quiet
        self._status_written = 0.0
        self.train_metrics: dict[str, float] = {}  # of the last update that was not skipped
        self.last_return = float("nan")  # of the last finished training episode
        self.bar = tqdm(total=total, initial=state.env_steps, disable=not show, unit="step", dynamic_ncols=True)
        self._mark(state)

    def _mark(self, state: RunState) -> None:
        self.t0, self.steps0, self.updates0 = time.time(), state.env_steps, state.updates

    def round_done(self, frames: int, state: RunState, logger, extra: Callable[[], dict] | None = None) -> bool:
        """Advance the bar by ``frames``; when a log is due (every ``every`` env steps and at the run's last
        step, so the final values are logged), log the ``train/*`` scalars, the rates and what ``extra()``
        returns (the sampler's statistics, read only then). Returns whether it logged."""
        self.bar.update(frames)
        self._write_status(state)
        if state.env_steps < state.next_log and state.env_steps < self.total:
            return False
        elapsed = max(time.time() - self.t0, 1e-9)
        rates = {"perf/env_steps_per_s": (state.env_steps - self.steps0) / elapsed,
                 "perf/updates_per_s": (state.updates - self.updates0) / elapsed}
        logger.log({**{f"train/{k}": v for k, v in self.train_metrics.items()}, **rates, **(extra() if extra else {}),
                    "train/updates": state.updates}, state.env_steps)
        self.bar.set_postfix(ret=f"{self.last_return:.1f}", sps=f"{rates['perf/env_steps_per_s']:.0f}",
                             ups=f"{rates['perf/updates_per_s']:.2f}")
        if not self.show and not self.quiet:  # quiet: the other ranks of a torchrun run
            print(f"step {state.env_steps}/{self.total} ({100 * state.env_steps / self.total:.0f}%)  updates {state.updates}  "
                  f"last return {self.last_return:.1f}  {rates['perf/env_steps_per_s']:.0f} steps/s  "
                  f"{rates['perf/updates_per_s']:.2f} updates/s", flush=True)
        self._mark(state)
        state.next_log = state.env_steps + self.every
        return True

    def _write_status(self, state: RunState) -> None:
        now = time.time()
        if self.status_file is None or (now - self._status_written < 2.0 and state.env_steps < self.total):
            return
        self._status_written = now
        tmp = self.status_file.with_name(f".{self.status_file.name}.tmp")
        tmp.write_text(json.dumps({"env_steps": state.env_steps, "total": self.total, "updates": state.updates,
                                   "last_return": self.last_return, "time": now}))
        os.replace(tmp, self.status_file)

    def close(self) -> None:
        self.bar.close()
