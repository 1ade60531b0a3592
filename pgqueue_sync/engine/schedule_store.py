"""The scheduler's statements: declare a worker's schedules, refresh them, claim due ticks.

A private collaborator of the :class:`~pgqueue_sync.engine.scheduler.Scheduler`, run over
the worker's fetch connection (as :mod:`.store`'s claims are); operators' statements on
schedules are the public :class:`~pgqueue_sync.schedule_queries.ScheduleQueries`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from typing import Any

from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from pgqueue_sync.cron import Cron, Plan, Schedule, plan
from pgqueue_sync.errors import DatabaseError
from pgqueue_sync.models import JobId
from pgqueue_sync.querying import QueryBase

__all__ = ["IDLE_IN_TRANSACTION", "Claimed", "ScheduleState", "ScheduleStore", "tick_headers"]

# A worker that stops while it holds a schedule's row (frozen, or cut off) loses its session
# after this long idle in the claim's transaction: the lock goes, another worker claims.
IDLE_IN_TRANSACTION = "10s"


@dataclasses.dataclass(frozen=True)
class ScheduleState:
    """A schedule's cursor as a worker last read it, with the database's time then."""

    name: str
    next_tick: datetime
    paused: bool
    now: datetime


@dataclasses.dataclass(frozen=True)
class Claimed:
    """One claim of a schedule's due ticks: the jobs it enqueued (one per tick, in order)."""

    state: ScheduleState
    plan: Plan
    job_ids: list[JobId]


def tick_headers(name: str, tick: datetime) -> Jsonb:
    """The headers of a tick's job: its schedule, and the tick (ISO 8601, UTC)."""
    return Jsonb({"schedule": name, "tick": tick.astimezone(timezone.utc).isoformat()})


class ScheduleStore(QueryBase):
    """What a worker that declares schedules asks of the database."""

    def declare(self, schedules: Sequence[Schedule]) -> list[ScheduleState]:
        """Create the rows of new schedules (first tick: the first after now) and update
        those whose definition changed; then say the schedules are declared (refresh)."""
        if not schedules:
            return []
        ordered = sorted(schedules, key=lambda s: s.name)
        crons = {s.name: s.cron for s in ordered}
        with self._conn() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.schedule_now, self._params())
            row = cur.fetchone()
            assert row is not None
            now: datetime = row[0]
            cur.execute(
                self._sql.declare_new,
                self._params(
                    names=[s.name for s in ordered],
                    expressions=[s.expression for s in ordered],
                    timezones=[s.timezone for s in ordered],
                    catch_ups=[s.catch_up for s in ordered],
                    limits=[s.catch_up_limit for s in ordered],
                    priorities=[s.priority for s in ordered],
                    payloads=[s.payload for s in ordered],
                    next_ticks=[crons[s.name].next_after(now) for s in ordered],
                ),
            )
            cur.execute(self._sql.lock_declared, {"names": [s.name for s in ordered]})
            stored = {r[0]: r for r in cur.fetchall()}
            for schedule in ordered:
                self._redeclare(cur, schedule, crons[schedule.name], stored[schedule.name], now)
        return self.refresh([s.name for s in ordered])

    def _redeclare(
        self, cur: Any, schedule: Schedule, cron: Cron, stored: tuple[Any, ...], now: datetime
    ) -> None:
        definition = (
            schedule.expression,
            schedule.timezone,
            schedule.catch_up,
            schedule.catch_up_limit,
            schedule.priority,
            schedule.payload,
        )
        current = (*stored[1:6], None if stored[6] is None else bytes(stored[6]))
        if definition == current:
            return
        next_tick, last_tick = stored[7], stored[8]
        if (schedule.expression, schedule.timezone) != current[:2]:
            # New ticks: from the first after now (and after the last one enqueued, so an
            # instant is never enqueued twice).
            next_tick = cron.next_after(now if last_tick is None else max(now, last_tick))
        cur.execute(
            self._sql.redeclare,
            self._params(
                name=schedule.name,
                expression=schedule.expression,
                timezone=schedule.timezone,
                catch_up=schedule.catch_up,
                catch_up_limit=schedule.catch_up_limit,
                priority=schedule.priority,
                payload=schedule.payload,
                next_tick=next_tick,
            ),
        )

    def refresh(self, names: Sequence[str]) -> list[ScheduleState]:
        """Say these schedules are declared by a running worker; return their cursors (a
        name missing from the result has no row: it was removed)."""
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.refresh_schedules, self._params(names=sorted(names)))
            return [ScheduleState(*row) for row in cur.fetchall()]

    def claim(self, name: str, cron: Callable[[str, str], Cron]) -> Claimed | None:
        """Enqueue the schedule's due ticks, as :func:`~pgqueue_sync.cron.plan` says, and move
        its cursor, in one transaction holding its row. None if another worker holds the
        row (it is claiming them) or the schedule has no row. ``cron`` parses the row's
        expression in its time zone."""
        with self._conn() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                self._sql.lock_schedule, self._params(name=name, idle_timeout=IDLE_IN_TRANSACTION)
            )
            row = cur.fetchone()
            if row is None:
                return None
            expression, zone, catch_up, limit, _, _, paused, cursor, now = row[:9]
            state = ScheduleState(name, cursor, paused, now)
            decided = plan(cron(expression, zone), cursor, now, catch_up, limit, paused=paused)
            if decided.next_tick == cursor:
                return Claimed(state, decided, [])
            cur.execute(
                self._sql.enqueue_ticks,
                self._params(
                    name=name,
                    expected=cursor,
                    next_tick=decided.next_tick,
                    ticks=decided.ticks,
                    headers=[tick_headers(name, t) for t in decided.ticks],
                ),
            )
            result = cur.fetchone()
            assert result is not None
            ids, moved = result
            if moved != 1:
                # Cannot happen while the row is locked: never enqueue without the cursor.
                raise DatabaseError(f"schedule {name!r}: its cursor moved during a claim")
        moved_state = dataclasses.replace(state, next_tick=decided.next_tick)
        return Claimed(moved_state, decided, sorted(ids or []))
