"""Stop signals set a flag instead of killing the process, inside the context only."""

import os
import signal

import pytest

from rs_jax.train.preemption import StopSignals


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_is_recorded_and_the_old_handler_restored(signum):
    before = signal.getsignal(signum)
    with StopSignals() as signals:
        assert signals.received is None
        os.kill(os.getpid(), signum)
        assert signals.received == signal.Signals(signum).name
    assert signal.getsignal(signum) is before
