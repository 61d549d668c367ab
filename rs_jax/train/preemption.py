"""Stopping a run cleanly: schedulers and TPU maintenance send SIGTERM, people press Ctrl-C.

Within one process the signal only sets a flag; the loop finishes its step, saves a
checkpoint with the data stream and exits with PREEMPTED_EXIT_CODE, and the same command
resumes. Several processes must agree on the step they save at, which JAX's preemption
service does (it catches SIGTERM itself when `jax.distributed` is initialised): the loop
asks Orbax's `reached_preemption` at every step, and the handlers here stay out of its way.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType

import jax

# EX_TEMPFAIL (sysexits.h): the run stopped early on request; run the same command again.
PREEMPTED_EXIT_CODE = 75


class StopSignals:
    """Context manager: SIGTERM / SIGINT set `received` (the signal's name) instead of
    killing the process; the previous handlers come back on exit."""

    SIGNALS = (signal.SIGTERM, signal.SIGINT)

    def __init__(self) -> None:
        self.received: str | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        self.received = signal.Signals(signum).name

    def __enter__(self) -> StopSignals:
        single = jax.process_count() == 1
        if single and threading.current_thread() is threading.main_thread():
            for sig in self.SIGNALS:
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
