"""The stop on a signal, on the run's side (GracefulStop) and on a driver's (ForwardedStop), with small processes."""
import os
import signal
import sys
import threading
import time

from torchrl_dreamerxp.training.graceful_stop import ForwardedStop, GracefulStop

# a stand-in for a training run: counts the SIGTERMs it gets, says it is ready, exits 100 + that count
CHILD = """
import os, signal, sys, time
got = []
signal.signal(signal.SIGTERM, lambda s, f: got.append(s))
open(sys.argv[1], "w").write(str(os.getsid(0)))
while not got:
    time.sleep(0.01)
time.sleep(0.3)  # a second delivery would land meanwhile
sys.exit(100 + len(got))
"""


def test_a_repeated_signal_within_the_window_is_the_same_stop_and_a_later_one_acts_at_once():
    # "acts at once" = the handler that was there before (Python's default in a plain run; here one that records)
    reached_previous = []
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: reached_previous.append(signum))
    try:
        with GracefulStop(repeat_window_s=0.5) as stop:
            os.kill(os.getpid(), signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # a driver forwarding it while a scheduler sent it too
            time.sleep(0.05)
            assert stop.requested and stop.signum == signal.SIGTERM and reached_previous == []
            time.sleep(0.6)
            os.kill(os.getpid(), signal.SIGTERM)  # asked again, later
            time.sleep(0.05)
            assert reached_previous == [signal.SIGTERM]
    finally:
        signal.signal(signal.SIGTERM, previous)


def test_a_signal_to_the_driver_reaches_each_run_once_and_no_further_run_starts(tmp_path):
    ready, codes = tmp_path / "ready", []
    with ForwardedStop() as driver:
        worker = threading.Thread(target=lambda: codes.append(driver.run([sys.executable, "-c", CHILD, str(ready)])))
        worker.start()
        deadline = time.time() + 60
        while not (ready.exists() and ready.read_text()) and time.time() < deadline:
            time.sleep(0.01)
        os.kill(os.getpid(), signal.SIGTERM)  # to the driver alone (Kubernetes stopping PID 1)
        worker.join(60)
        assert codes == [101]  # the run got it, once
        assert int(ready.read_text()) != os.getsid(0)  # its own session: a terminal's Ctrl-C reaches it only so
        assert driver.requested and driver.run([sys.executable, "-c", "pass"]) is None  # nothing new starts


def test_not_entered_the_driver_is_a_plain_subprocess_run():
    # the run stays in this session: a Ctrl-C in the terminal reaches it directly, as nothing forwards it
    same_session = "import os, sys; sys.exit(3 if os.getsid(0) == int(sys.argv[1]) else 1)"
    assert ForwardedStop().run([sys.executable, "-c", same_session, str(os.getsid(0))]) == 3
