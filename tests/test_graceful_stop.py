"""GracefulStop's handler on its own: nothing it does may turn the stop it was asked for into a crash."""
import os
import signal
import sys

from torchrl_dreamerxp.training.graceful_stop import GracefulStop


class ClosedPipe:
    """A stdout whose reader is gone (``... | tee log`` after Ctrl-C killed tee, a closed terminal)."""

    def write(self, text):
        raise BrokenPipeError(32, "Broken pipe")

    def flush(self):
        raise BrokenPipeError(32, "Broken pipe")


def test_the_stop_is_kept_when_its_message_cannot_be_printed(monkeypatch):
    monkeypatch.setattr(sys, "stdout", ClosedPipe())
    with GracefulStop() as stop:
        os.kill(os.getpid(), signal.SIGTERM)  # the handler's print raises; the run must still stop gracefully
        assert stop.requested and stop.signum == signal.SIGTERM
