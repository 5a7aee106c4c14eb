"""Time for the engine, injectable so Wait, Retry and timeouts need not really sleep.

`SystemClock` is wall time. `VirtualClock` jumps forward instead of sleeping: a Wait of
an hour returns at once and `now()` has moved by an hour, which is what tests and the
conformance run use.
"""
from __future__ import annotations

import threading
import time
from typing import Protocol


class Clock(Protocol):
    """What the interpreter needs from time."""

    virtual: bool

    def now(self) -> float:
        """Seconds since the epoch."""

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        """Waits; returns False if `cancel` was set before the time was up."""


class SystemClock:
    """Wall-clock time; sleeping can be cut short by a cancel event (StopExecution)."""

    virtual = False

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        if seconds <= 0:
            return not (cancel is not None and cancel.is_set())
        if cancel is None:
            time.sleep(seconds)
            return True
        return not cancel.wait(seconds)


class VirtualClock:
    """Time that advances only when someone sleeps; sleeping is instant.

    Shared by all threads of a run: parallel branches that sleep advance the same clock,
    so virtual time is an upper bound of what real time would have been.
    """

    virtual = True

    def __init__(self, start: float | None = None) -> None:
        self._now = time.time() if start is None else start
        self._lock = threading.Lock()

    def now(self) -> float:
        with self._lock:
            return self._now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)

    def sleep(self, seconds: float, cancel: threading.Event | None = None) -> bool:
        if cancel is not None and cancel.is_set():
            return False
        self.advance(seconds)
        return True
