"""SIGTERM or Ctrl-C stops a training run at its next round, after a checkpoint, so a resume loses nothing.

A scheduler preempting a job (SLURM, Kubernetes, a session that ends) sends SIGTERM and waits a while before
SIGKILL; Ctrl-C sends SIGINT. Either sets a flag the training loop reads between rounds: it checkpoints the
round it has just collected (as a scheduled checkpoint would) and exits with ``128 + signal`` (143 for SIGTERM,
130 for SIGINT), without ``done``. ``resume=true`` then continues from exactly there. A second signal, a second
or more after the first, acts at once (Python's default), for a run that must stop now; one within that second
is the same stop delivered twice (a driver forwarding it while a scheduler signals every process) and changes
nothing.

A driver of several runs (the experiment runner, the learning benchmarks) enters :class:`ForwardedStop`: a
signal sent to the driver alone (Kubernetes stops PID 1; ``kill <driver>``) goes on to every run it started,
and no further run starts.
"""
from __future__ import annotations

import os
import signal
import subprocess
import threading
import time

__all__ = ["ForwardedStop", "GracefulStop", "RunStopped", "STOP_SIGNALS", "STOPPED_EXIT_CODES", "stopped_by_signal"]

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

    def __init__(self, signals=STOP_SIGNALS, repeat_window_s: float = 1.0):
        self.signals, self.signum, self._previous = tuple(signals), None, {}
        self.repeat_window_s, self._first_at = repeat_window_s, 0.0

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def _handle(self, signum, frame) -> None:
        now = time.monotonic()
        if self.signum is None:
            self.signum, self._first_at = signum, now
            _say(f"{signal.Signals(signum).name}: stopping after the next round's checkpoint "
                 f"(send it again to stop at once)")
        elif now - self._first_at >= self.repeat_window_s:  # asked again: stop now, as Python would have
            signal.signal(signum, self._previous.get(signum, signal.SIG_DFL))
            signal.raise_signal(signum)
        # else: the same stop delivered twice (a driver forwarding it, a scheduler signalling every process)

    def __enter__(self) -> "GracefulStop":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


class ForwardedStop:
    """A driver's side of the stop: while entered, SIGTERM and SIGINT sent to this process go on to every run
    started through :meth:`run` (each checkpoints and exits ``128 + signal``), and no further run starts.

    While entered, each run gets its own session, so a Ctrl-C in the terminal reaches it once, through this
    (not also through the terminal's process group). Not entered (or entered off the main thread), :meth:`run`
    is a plain :func:`subprocess.run`.

    Examples:
        >>> import sys
        >>> with ForwardedStop() as driver:
        ...     driver.run([sys.executable, "-c", "pass"])
        0
    """

    def __init__(self, signals=STOP_SIGNALS):
        self.signals, self.signum, self._previous = tuple(signals), None, {}
        self._runs: set[subprocess.Popen] = set()

    @property
    def requested(self) -> bool:
        return self.signum is not None

    def run(self, cmd, **popen_kwargs) -> int | None:
        """``cmd``'s exit code once it ends; ``None`` (not started) after a stop signal."""
        if self.requested:
            return None
        proc = subprocess.Popen(cmd, start_new_session=bool(self._previous), **popen_kwargs)
        self._runs.add(proc)
        if self.requested:  # the signal came while it started: the handler may not have seen it
            _send(proc, self.signum)
        try:
            return proc.wait()
        finally:
            self._runs.discard(proc)

    def _handle(self, signum, frame) -> None:
        if self.signum is None:
            _say(f"{signal.Signals(signum).name}: passed on to {len(self._runs)} running run(s); no further run starts")
        self.signum = signum
        for proc in list(self._runs):  # every signal: a second one, later, stops the runs at once
            _send(proc, signum)

    def __enter__(self) -> "ForwardedStop":
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._handle) for s in self.signals}
        return self

    def __exit__(self, *exc) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous = {}


def _send(proc: subprocess.Popen, signum: int) -> None:
    try:
        proc.send_signal(signum)
    except ProcessLookupError:  # it ended meanwhile
        pass


def _say(message: str) -> None:
    """A line from a signal handler: the signal may have come in the middle of a write to stdout, where a
    ``print`` raises "reentrant call"; then straight to stderr's file descriptor."""
    try:
        print(message, flush=True)
    except RuntimeError:
        os.write(2, (message + "\n").encode())
