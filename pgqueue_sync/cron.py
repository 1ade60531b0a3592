"""Cron expressions and the ticks of a schedule (no database here).

A schedule's ticks are the times its cron expression matches in its time zone, as croniter
and zoneinfo define them: five fields (minute hour day month weekday), or six with seconds
as the *last* field (croniter's convention: ``"* * * * * *"`` is every second). Ticks are
instants; they are handled in UTC.

:func:`plan` decides which due ticks a claim enqueues: every tick that is on time, and after
downtime (the oldest due tick is more than :data:`MISSED_AFTER` late) what ``catch_up`` says.
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .clock import utc_now
from .errors import ConfigurationError, MissingDependencyError
from .settings import validate_entrypoint

__all__ = [
    "CATCH_UP_POLICIES",
    "DEFAULT_CATCH_UP_LIMIT",
    "MISSED_AFTER",
    "CatchUp",
    "Cron",
    "Plan",
    "Schedule",
    "plan",
]

CatchUp = Literal["latest", "none", "all"]
CATCH_UP_POLICIES: tuple[CatchUp, ...] = ("latest", "none", "all")

# A due tick more than this late was missed: no worker could enqueue it in time (none ran,
# or the database could not be reached). Ticks less late are on time and always enqueued.
MISSED_AFTER = timedelta(seconds=60)

# catch_up="all" enqueues at most this many missed ticks by default (the most recent).
DEFAULT_CATCH_UP_LIMIT = 100
MAX_CATCH_UP_LIMIT = 10_000

_INSTALL_HINT = "periodic jobs need croniter: pip install 'pgqueue-sync[cron]'"


def _croniter() -> Any:
    """The croniter class, or MissingDependencyError saying how to install it."""
    try:
        module = importlib.import_module("croniter")
    except ImportError:
        raise MissingDependencyError(_INSTALL_HINT) from None
    return module.croniter


def _zone(name: object) -> ZoneInfo:
    if not isinstance(name, str) or not name:
        raise ConfigurationError(f"timezone must be an IANA time zone name, got {name!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigurationError(
            f"unknown time zone {name!r}: use an IANA name such as 'UTC' or 'Europe/Paris' "
            "(on Windows, pip install tzdata)"
        ) from None


class Cron:
    """A cron expression in a time zone: its ticks before and after a time, in UTC."""

    def __init__(self, expression: str, timezone_name: str = "UTC") -> None:
        if not isinstance(expression, str) or not expression.strip():
            raise ConfigurationError(
                f"a cron expression must be a non-empty str, got {expression!r}"
            )
        self.expression = expression
        self.timezone = timezone_name
        self.zone = _zone(timezone_name)
        self._croniter = _croniter()
        error_class = importlib.import_module("croniter").CroniterError
        try:
            self._croniter(expression, datetime(2000, 1, 1, tzinfo=self.zone))
        except (error_class, ValueError, TypeError, KeyError) as exc:
            raise ConfigurationError(f"invalid cron expression {expression!r}: {exc}") from None
        try:
            self.next_after(utc_now())
        except (error_class, ValueError) as exc:
            raise ConfigurationError(f"cron expression {expression!r} never fires: {exc}") from None

    def _iter(self, start: datetime) -> Any:
        return self._croniter(self.expression, start.astimezone(self.zone))

    def next_after(self, t: datetime) -> datetime:
        """The first tick strictly after ``t``."""
        found: datetime = self._iter(t).get_next(datetime)
        return found.astimezone(timezone.utc)

    def latest_until(self, t: datetime) -> datetime:
        """The last tick at or before ``t``."""
        before: datetime = self._iter(t).get_prev(datetime)
        after = self.next_after(before)
        return after if after <= t else before.astimezone(timezone.utc)

    def between(self, start: datetime, end: datetime) -> Iterator[datetime]:
        """Ticks ``start <= tick <= end``, in order (lazily)."""
        tick = start if self.latest_until(start) == start else self.next_after(start)
        while tick <= end:
            yield tick
            tick = self.next_after(tick)

    def last(self, end: datetime, count: int, since: datetime) -> list[datetime]:
        """The ``count`` most recent ticks ``since <= tick <= end``, in order."""
        ticks: list[datetime] = []
        tick = self.latest_until(end)
        it = self._iter(tick)
        while len(ticks) < count and tick >= since:
            ticks.append(tick)
            tick = it.get_prev(datetime).astimezone(timezone.utc)
        return ticks[::-1]


@dataclasses.dataclass(frozen=True)
class Schedule:
    """A schedule as code declares it (``qm.periodic``); its jobs are the entrypoint ``name``'s."""

    name: str
    expression: str
    timezone: str = "UTC"
    catch_up: CatchUp = "latest"
    catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT
    priority: int = 0
    payload: bytes | None = None

    @classmethod
    def build(
        cls,
        name: str,
        expression: str,
        *,
        timezone: str = "UTC",
        catch_up: CatchUp = "latest",
        catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT,
        priority: int = 0,
        payload: bytes | bytearray | memoryview | None = None,
        max_payload_bytes: int | None = None,
    ) -> Schedule:
        """A checked Schedule: a bad argument is a ConfigurationError saying why (a bad
        expression with croniter's reason); MissingDependencyError without croniter."""
        validate_entrypoint(name)
        Cron(expression, timezone)
        if catch_up not in CATCH_UP_POLICIES:
            raise ConfigurationError(
                f"catch_up must be one of {', '.join(map(repr, CATCH_UP_POLICIES))}, "
                f"got {catch_up!r}"
            )
        if (
            isinstance(catch_up_limit, bool)
            or not isinstance(catch_up_limit, int)
            or not 1 <= catch_up_limit <= MAX_CATCH_UP_LIMIT
        ):
            raise ConfigurationError(
                f"catch_up_limit must be an int from 1 to {MAX_CATCH_UP_LIMIT}, "
                f"got {catch_up_limit!r}"
            )
        if isinstance(priority, bool) or not isinstance(priority, int) or abs(priority) >= 2**31:
            raise ConfigurationError(f"priority must be a 32-bit int, got {priority!r}")
        if payload is not None:
            if not isinstance(payload, (bytes, bytearray, memoryview)):
                raise ConfigurationError(
                    f"payload must be bytes or None, not {type(payload).__name__}"
                )
            payload = bytes(payload)
            if max_payload_bytes is not None and len(payload) > max_payload_bytes:
                raise ConfigurationError(
                    f"payload is {len(payload)} bytes, over the limit of {max_payload_bytes}"
                )
        return cls(name, expression, timezone, catch_up, catch_up_limit, priority, payload)

    @property
    def cron(self) -> Cron:
        return Cron(self.expression, self.timezone)


@dataclasses.dataclass(frozen=True)
class Plan:
    """What one claim does: enqueue ``ticks``, then move the cursor to ``next_tick``.
    ``missed``: the due ticks were late enough to count as downtime."""

    ticks: list[datetime]
    next_tick: datetime
    missed: bool = False


def plan(
    cron: Cron,
    cursor: datetime,
    now: datetime,
    catch_up: CatchUp,
    catch_up_limit: int,
    *,
    paused: bool = False,
) -> Plan:
    """Which ticks to enqueue at ``now`` when every tick before ``cursor`` is handled.

    Due ticks are those from ``cursor`` to ``now``. If the oldest is at most MISSED_AFTER
    late they are all on time and all enqueued. Otherwise there was downtime and
    ``catch_up`` decides: ``"latest"`` the most recent due tick only, ``"none"`` none,
    ``"all"`` each (the ``catch_up_limit`` most recent). A paused schedule enqueues none.
    The cursor moves past ``now`` (never back): a tick is handled once.
    """
    if now < cursor:
        return Plan([], cursor)
    next_tick = max(cron.next_after(now), cursor)
    if paused:
        return Plan([], next_tick)
    if now - cursor <= MISSED_AFTER:
        return Plan(list(cron.between(cursor, now)), next_tick)
    if catch_up == "none":
        ticks = []
    elif catch_up == "latest":
        ticks = cron.last(now, 1, cursor)
    else:
        ticks = cron.last(now, catch_up_limit, cursor)
    return Plan(ticks, next_tick, missed=True)
