"""The knobs of one ``QueueManager.run()``, validated in one place."""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Literal

from .clock import to_seconds
from .errors import ConfigurationError

__all__ = ["MAX_DURATION", "Mode", "RunOptions", "duration", "positive_number", "run_overrides"]

Mode = Literal["continuous", "drain"]

# The longest timeout, interval or retention accepted: past it a wait overflows the
# platform's timers (threading.TIMEOUT_MAX is under 300 years) or ``now() - interval``
# leaves PostgreSQL's timestamp range. Use None where "no limit" is meant.
MAX_DURATION = timedelta(days=3650)


def duration(value: object, name: str, *, zero: bool = False) -> float:
    """``value`` (seconds, or a timedelta) as finite seconds.

    Refused with ConfigurationError: anything but a real number or a timedelta, negative,
    NaN, infinite, longer than MAX_DURATION, and zero unless ``zero`` (zero would disable
    or busy-loop what the value paces).
    """
    if isinstance(value, bool) or not isinstance(value, (timedelta, numbers.Real)):
        raise ConfigurationError(
            f"{name} must be a number of seconds or a timedelta, not {type(value).__name__}"
        )
    seconds = to_seconds(value if isinstance(value, timedelta) else float(value))
    if math.isnan(seconds) or seconds < 0 or (seconds == 0 and not zero):
        kind = "zero or more" if zero else "more than zero"
        raise ConfigurationError(f"{name} must be {kind} seconds, got {value!r}")
    if seconds > MAX_DURATION.total_seconds():
        raise ConfigurationError(
            f"{name} must be finite and at most {MAX_DURATION.days} days, got {value!r}"
        )
    return seconds


def positive_number(value: object, name: str) -> float:
    """``value`` as a finite float above zero, else ConfigurationError."""
    if (
        isinstance(value, bool)
        or not isinstance(value, numbers.Real)
        or not math.isfinite(float(value))
        or not float(value) > 0
    ):
        raise ConfigurationError(f"{name} must be a finite number above zero, got {value!r}")
    return float(value)


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The knobs of one ``run()``, validated."""

    dequeue_timeout: float = 30.0
    batch_size: int = 10
    retry_timer: timedelta | None = timedelta(minutes=1)
    workers: int = 4
    buffer_size: int = 20
    shutdown_timeout: float | None = None
    mode: Mode = "continuous"
    heartbeat_interval: float = 10.0
    log_retention: timedelta | None = None

    @classmethod
    def build(
        cls,
        *,
        dequeue_timeout: timedelta | float,
        batch_size: int,
        retry_timer: timedelta | float | None,
        workers: int,
        buffer_size: int | None,
        shutdown_timeout: timedelta | float | None,
        mode: str,
        heartbeat_interval: timedelta | float | None,
        log_retention: timedelta | float | None = None,
    ) -> RunOptions:
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError("batch_size must be a positive int")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError("workers must be a positive int")
        if buffer_size is None:
            buffer_size = 2 * max(batch_size, workers)
        elif isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ConfigurationError("buffer_size must be a positive int")
        if mode not in ("continuous", "drain"):
            raise ConfigurationError(f"mode must be 'continuous' or 'drain', not {mode!r}")
        # retry_timer=None is how rescue is disabled; 0 (or NaN) would disable it silently.
        retry: timedelta | None = None
        if retry_timer is not None:
            retry = timedelta(seconds=duration(retry_timer, "retry_timer"))
        if heartbeat_interval is None:
            # Several beats fit in retry_timer, so a live worker is never presumed dead.
            beat = 10.0 if retry is None else min(10.0, retry.total_seconds() / 5)
        else:
            beat = duration(heartbeat_interval, "heartbeat_interval")
        if retry is not None and beat * 2 > retry.total_seconds():
            raise ConfigurationError(
                "heartbeat_interval must be well inside retry_timer (at most half of it), or "
                "live workers would have their jobs re-picked"
            )
        return cls(
            dequeue_timeout=max(0.01, duration(dequeue_timeout, "dequeue_timeout")),
            batch_size=batch_size,
            retry_timer=retry,
            workers=workers,
            buffer_size=buffer_size,
            shutdown_timeout=None
            if shutdown_timeout is None
            else duration(shutdown_timeout, "shutdown_timeout", zero=True),
            mode=mode,  # type: ignore[arg-type]
            heartbeat_interval=max(0.01, beat),
            log_retention=None
            if log_retention is None
            else timedelta(seconds=duration(log_retention, "log_retention")),
        )

    @property
    def claim_size(self) -> int:
        """How many jobs one claim asks for (never more than the buffer holds)."""
        return min(self.batch_size, self.buffer_size)


def run_overrides(options: object, setting: str) -> dict[str, Any]:
    """``options``, a mapping of ``QueueManager.run()``'s parameters kept in an
    application's configuration (``setting`` names it in messages), checked: unknown names
    and bad values are a ConfigurationError now rather than when a worker starts."""
    import inspect  # noqa: PLC0415

    from .qm import QueueManager  # noqa: PLC0415 - qm imports this module

    defaults = {
        name: parameter.default
        for name, parameter in inspect.signature(QueueManager.run).parameters.items()
        if name != "self"
    }
    if not isinstance(options, Mapping):
        raise ConfigurationError(f"{setting} must be a dict of run()'s parameters")
    unknown = sorted(set(options) - defaults.keys())
    if unknown:
        raise ConfigurationError(
            f"{setting}: {', '.join(map(str, unknown))} not a parameter of run() "
            f"(those are: {', '.join(defaults)})"
        )
    checked = {**defaults, **options}
    checked["workers"] = checked["workers"] or 1
    RunOptions.build(**checked)
    return dict(options)
