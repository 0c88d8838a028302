"""SIGTERM or Ctrl-C stops a training run at its next round, after a checkpoint, so a resume loses nothing.

A scheduler preempting a job (SLURM, Kubernetes, a session that ends) sends SIGTERM and waits a while before
SIGKILL; Ctrl-C sends SIGINT. Either sets a flag the training loop reads between rounds: it checkpoints the
round it has just collected (as a scheduled checkpoint would) and exits with ``128 + signal`` (143 for SIGTERM,
130 for SIGINT), without ``done``. ``resume=true`` then continues from exactly there. A second signal acts at
once (Python's default), for a run that must stop now.
"""
from __future__ import annotations

import os
import signal
import threading

__all__ = ["GracefulStop", "RunStopped", "STOP_SIGNALS", "STOPPED_EXIT_CODES", "stopped_by_signal"]

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
#: the exit codes of a run that stopped on one of them after checkpointing: 128 + signal (143, 130)
STOPPED_EXIT_CODES = tuple(128 + s for s in STOP_SIGNALS)


def stopped_by_signal(returncode: int) -> bool:
    """Whether a run's process ended on SIGTERM or SIGINT: ``128 + signal`` after its checkpoint, or
    ``-signal`` (``subprocess``'s code for a process the signal ended before it could answer, say while
    Python started up): its last checkpoint stands and a resume continues from it.

    Examples:
        >>> stopped_by_signal(143), stopped_by_signal(-signal.SIGTERM), stopped_by_signal(1), stopped_by_signal(-9)
        (True, True, False, False)
    """
    return returncode in STOPPED_EXIT_CODES or -returncode in STOP_SIGNALS


class RunStopped(SystemExit):
    """The run stopped on a signal after checkpointing; its exit code is ``128 + signal``.

    Examples:
        >>> RunStopped(signal.SIGTERM, 96, "runs/x").code
        143
    """

    def __init__(self, signum: int, env_steps: int, run_dir):
        super().__init__(128 + signum)
        self.signum, self.env_steps, self.run_dir = signum, env_steps, run_dir

    def __str__(self) -> str:
        return (f"stopped by {signal.Signals(self.signum).name} at env step {self.env_steps} after a checkpoint: "
                f"resume=true run_dir={self.run_dir} continues from there")


class GracefulStop:
    """While entered, SIGTERM and SIGINT set :attr:`signum` instead of ending the process.

    Handlers can only be installed from the main thread: entered elsewhere (a run inside a thread), it
    installs nothing and :attr:`requested` stays false.

    Examples:
        >>> import os
        >>> before = signal.getsignal(signal.SIGTERM)
        >>> with GracefulStop() as stop:
        ...     os.kill(os.getpid(), signal.SIGTERM)  # doctest: +ELLIPSIS
        ...     stop.requested, stop.signum == signal.SIGTERM
        SIGTERM: stopping after the next round's checkpoint ...
        (True, True)
        >>> signal.getsignal(signal.SIGTERM) is before  # the previous handler is back on exit
        True
    """

    def __init__(self, signals=STOP_SIGNALS):
        self.signals, self.signum, self._previous = tuple(signals), None, {}

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        self.signum = signum
        previous = self._previous.get(signum)  # None: a handler installed from C, which Python cannot put back
        signal.signal(signum, signal.SIG_DFL if previous is None else previous)  # a second one acts at once
        message = f"{signal.Signals(signum).name}: stopping after the next round's checkpoint (send it again to stop at once)"
        try:  # nothing raised here may reach the training loop: the stop is asked for, a lost line is not worse
            print(message, flush=True)
        except (RuntimeError, OSError):  # mid-write to stdout ("reentrant call"), or a closed pipe / terminal
            try:
                os.write(2, (message + "\n").encode())
            except OSError:
                pass

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}
