"""The scheduler: a worker's schedules (``qm.periodic``), declared at start, their due ticks
enqueued as jobs.

The worker's only contact is :meth:`Scheduler.tick` (enqueue what is due; return the seconds
until it has something to do again) and :meth:`Scheduler.due_in` (how long the fetch loop
may sleep). A worker keeps, for each schedule it declares, when (on its monotonic clock) the
next tick falls due; until then ``tick()`` asks nothing of the database. When one falls due
it *claims* it: in one transaction holding the schedule's row (another worker holding it is
skipped), it enqueues the due ticks' jobs and moves the row's cursor past them. That lock
and that cursor, not timing, are why a tick is enqueued once whatever the number of workers.

Every ``REFRESH_INTERVAL`` the worker says it still declares its schedules (``seen``) and
reads back their cursors (another worker or an operator may have moved them).
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Iterable, Mapping

from pgqueue_sync.clock import Clock
from pgqueue_sync.cron import MISSED_AFTER, Cron, Schedule
from pgqueue_sync.db import Driver
from pgqueue_sync.errors import SchemaNotInstalledError, SchemaVersionError
from pgqueue_sync.registry import Entrypoint
from pgqueue_sync.settings import Settings

from .schedule_store import Claimed, ScheduleState, ScheduleStore

__all__ = ["BUSY_RETRY", "FAILURE_BACKOFF_MAX", "REFRESH_INTERVAL", "Scheduler", "cron_of"]

logger = logging.getLogger(__name__)

# How often a worker says it still declares its schedules (and re-reads their cursors): also
# the longest it sleeps without looking at them, so a step of the wall clock is seen within it.
REFRESH_INTERVAL = 60.0
# Another worker holds a schedule's row (it is enqueueing the tick): look again after this,
# unless its NOTIFY wakes this worker first.
BUSY_RETRY = 1.0
# After a failure (connection lost, ...), the next try is 0.5 s later, doubling up to 60 s.
FAILURE_BACKOFF_MAX = 60.0


@functools.lru_cache(maxsize=256)
def cron_of(expression: str, timezone: str) -> Cron:
    """The parsed expression (cached: workers read it from the row at each claim)."""
    return Cron(expression, timezone)


class Scheduler:
    """The schedules a worker declares, and the ticks it enqueues (see the module
    docstring). Without schedules it does nothing and never asks the database."""

    def __init__(
        self, *, store: ScheduleStore, clock: Clock, registry: Mapping[str, Entrypoint]
    ) -> None:
        self.schedules: dict[str, Schedule] = {
            name: entry.schedule
            for name, entry in sorted(registry.items())
            if entry.schedule is not None
        }
        self.store = store
        self.clock = clock
        # Jobs this worker enqueued for ticks.
        self.enqueued = 0
        # Each schedule's next tick, as a time on the monotonic clock (an estimate: the
        # claim decides on the database's time).
        self._due: dict[str, float] = {}
        self._declared = False
        self._refresh_at = 0.0
        self._retry_at = 0.0
        self._failures = 0

    @classmethod
    def over(
        cls,
        connection: Driver,
        settings: Settings,
        clock: Clock,
        registry: Mapping[str, Entrypoint],
    ) -> Scheduler:
        """The scheduler of a worker's ``registry``, its statements run on ``connection``."""
        return cls(
            store=ScheduleStore(connection, settings, clock=clock), clock=clock, registry=registry
        )

    def __bool__(self) -> bool:
        return bool(self.schedules)

    @property
    def failures(self) -> int:
        """Consecutive ``tick()`` calls that failed (0 once one succeeds)."""
        return self._failures

    # -- the worker's interface ----------------------------------------------------------

    def tick(self, *, force: bool = False) -> float:
        """Enqueue the ticks that are due (declaring the schedules first, the first time);
        return the seconds until there is something to do again (``math.inf`` without
        schedules). ``force``: claim every schedule now, whatever the local timers say.

        Errors other than a missing or foreign schema are logged and retried with a
        backoff: a schedule never stops the worker's other work.
        """
        if not self.schedules:
            return math.inf
        if not force and self.due_in() > 0:
            return self.due_in()
        try:
            if not self._declared:
                self._learn(self.store.declare(list(self.schedules.values())))
                self._declared = True
                self._refresh_at = self.clock.monotonic() + REFRESH_INTERVAL
            now = self.clock.monotonic()
            for name in self.schedules:
                if force or self._due.get(name, now) <= now:
                    self.claim(name)
            if self.clock.monotonic() >= self._refresh_at:
                self._refresh()
            self._failures = 0
        except (SchemaNotInstalledError, SchemaVersionError):
            raise
        except Exception as exc:
            self._failures += 1
            delay = min(FAILURE_BACKOFF_MAX, 0.5 * 2 ** min(self._failures - 1, 7))
            self._retry_at = self.clock.monotonic() + delay
            logger.warning("schedules: %s (trying again in %.1f s)", exc, delay)
        return self.due_in()

    def due_in(self) -> float:
        """Seconds until ``tick()`` has something to do (0: now; ``math.inf``: never)."""
        if not self.schedules:
            return math.inf
        if not self._declared:
            wake = self._retry_at
        else:
            wake = max(self._retry_at, min(self._refresh_at, *self._due.values()))
        return max(0.0, wake - self.clock.monotonic())

    # -- steps ---------------------------------------------------------------------------

    def claim(self, name: str) -> Claimed | None:
        """Claim schedule ``name``'s due ticks now: enqueue them and move its cursor (None
        if another worker holds its row, or it has none). Errors propagate."""
        claimed = self.store.claim(name, cron_of)
        if claimed is None:
            # Another worker holds the row (it is enqueueing this tick), or it was removed
            # (the next refresh declares it again).
            self._due[name] = self.clock.monotonic() + BUSY_RETRY
            return None
        self._learn([claimed.state])
        if claimed.job_ids:
            self.enqueued += len(claimed.job_ids)
            logger.info(
                "schedule %s: enqueued tick(s) %s as job(s) %s",
                name,
                ", ".join(t.isoformat() for t in claimed.plan.ticks),
                ", ".join(map(str, claimed.job_ids)),
            )
        if claimed.plan.missed:
            logger.warning(
                "schedule %s: its due ticks were missed (none was enqueued within %s of its "
                "time: no worker ran); catch_up=%r enqueued %d of them",
                name,
                MISSED_AFTER,
                self.schedules[name].catch_up,
                len(claimed.plan.ticks),
            )
        return claimed

    def _refresh(self) -> None:
        found = self.store.refresh(list(self.schedules))
        self._learn(found)
        if len(found) < len(self.schedules):
            # A schedule's row was removed while this worker declares it: create it again.
            self._learn(self.store.declare(list(self.schedules.values())))
        self._refresh_at = self.clock.monotonic() + REFRESH_INTERVAL

    def _learn(self, states: Iterable[ScheduleState]) -> None:
        mono = self.clock.monotonic()
        for state in states:
            if state.name in self.schedules:
                wait = (state.next_tick - state.now).total_seconds()
                self._due[state.name] = mono + max(0.0, wait)
