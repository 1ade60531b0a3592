"""Time, in one place: the engine asks a Clock, never ``time`` or ``now()`` directly.

``SystemClock`` uses ``time.monotonic`` for local timers and lets PostgreSQL's ``now()``
stamp rows, so workers on several machines agree on one clock. ``ManualClock`` is moved by
hand; tests use it to make heartbeats, retry_timer and backoff deterministic.

A blocking wait is bounded in real time, whatever the Clock: ``Deadline`` measures it
(a ManualClock that never moves must not make a wait endless). ``to_seconds`` is the one
conversion of "a timedelta or a number of seconds".
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

from .errors import ConfigurationError

__all__ = [
    "Clock",
    "Deadline",
    "ManualClock",
    "SystemClock",
    "elapsed_since",
    "now_real",
    "to_seconds",
    "utc_now",
]


def to_seconds(value: timedelta | float) -> float:
    """``value`` in seconds: a timedelta, or a number of seconds."""
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class Deadline:
    """A moment in real time that bounds a blocking wait (None: no bound)."""

    def __init__(self, timeout: float | None) -> None:
        self._end = None if timeout is None else time.monotonic() + timeout

    def remaining(self, default: float | None = None) -> float | None:
        """Seconds left (never below 0); ``default`` when there is no bound."""
        if self._end is None:
            return default
        return max(0.0, self._end - time.monotonic())

    @property
    def passed(self) -> bool:
        return self._end is not None and time.monotonic() >= self._end


def elapsed_since(start: float) -> float:
    """Real seconds since ``start``, a ``now_real`` reading."""
    return time.monotonic() - start


def now_real() -> float:
    """A reading of real time, for ``elapsed_since`` (stall detection and the like)."""
    return time.monotonic()


def utc_now() -> datetime:
    """The wall time of this machine, in UTC: for checks made when code declares something
    (a cron expression that never fires), never to stamp a row (the database does)."""
    return datetime.now(timezone.utc)


class Clock(Protocol):
    """Where the queue reads time: a monotonic clock for timers, and the time rows are
    stamped with (None: the database's ``now()``)."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (local timers, durations)."""
        ...

    def now(self) -> datetime | None:
        """The time to stamp rows with, or None to use the database's ``now()``."""
        ...


class SystemClock:
    """The real clock: ``time.monotonic()``, and the database's ``now()`` for rows."""

    # ``time.monotonic`` itself, not a method calling it: read several times per job.
    monotonic = staticmethod(time.monotonic)

    def now(self) -> datetime | None:
        """None: rows are stamped with the database's ``now()``."""
        return None


class ManualClock:
    """A clock that only moves when ``advance`` is called, for tests.

    Args:
        start: its wall time at first (aware); default 2030-01-01 UTC.
    """

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._wall = start or datetime(2030, 1, 1, tzinfo=timezone.utc)
        self._mono = 1000.0

    def monotonic(self) -> float:
        """Its monotonic reading, moved only by ``advance``."""
        with self._lock:
            return self._mono

    def now(self) -> datetime:
        """Its wall time, stamped on rows instead of the database's ``now()``."""
        with self._lock:
            return self._wall

    def advance(self, seconds: float | timedelta) -> None:
        """Move both readings forward.

        Args:
            seconds: how far, in seconds or a ``timedelta``.

        Raises:
            ConfigurationError: ``seconds`` is negative (a clock does not go back) or NaN.
        """
        delta = to_seconds(seconds)
        if not delta >= 0:
            raise ConfigurationError("a clock does not go back")
        with self._lock:
            self._mono += delta
            self._wall += timedelta(seconds=delta)
