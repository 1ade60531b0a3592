"""Time, injectable: the engine asks a Clock, never ``time`` or ``now()`` directly.

``SystemClock`` uses ``time.monotonic`` for local timers and lets PostgreSQL's ``now()``
stamp rows, so workers on several machines agree on one clock. ``ManualClock`` is moved by
hand; tests use it to make heartbeats, retry_timer and backoff deterministic.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from typing import Protocol

from .errors import ConfigurationError

__all__ = ["Clock", "ManualClock", "SystemClock"]


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a clock that never goes back (local timers, durations)."""
        ...

    def now(self) -> datetime | None:
        """The time to stamp rows with, or None to use the database's ``now()``."""
        ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def now(self) -> datetime | None:
        return None


class ManualClock:
    """A clock that only moves when :meth:`advance` is called."""

    def __init__(self, start: datetime | None = None) -> None:
        self._lock = threading.Lock()
        self._wall = start or datetime(2030, 1, 1, tzinfo=timezone.utc)
        self._mono = 1000.0

    def monotonic(self) -> float:
        with self._lock:
            return self._mono

    def now(self) -> datetime:
        with self._lock:
            return self._wall

    def advance(self, seconds: float | timedelta) -> None:
        delta = seconds.total_seconds() if isinstance(seconds, timedelta) else float(seconds)
        if not delta >= 0:
            raise ConfigurationError("a clock does not go back")
        with self._lock:
            self._mono += delta
            self._wall += timedelta(seconds=delta)
