"""The schedules' queries: what operators ask (list, pause, resume, run, remove) and what the
workers that declare schedules do (declare, refresh, claim ticks).

:class:`~pgqueue_sync.queries.Queries` inherits :class:`ScheduleQueries`; a worker's
:class:`~pgqueue_sync.schedules.Scheduler` uses :class:`TickQueries` over its fetch
connection.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from .cron import CatchUp, Cron, Plan, Schedule, plan
from .errors import DatabaseError, ScheduleNotFoundError
from .models import JobId, JobStatus
from .worker_queries import QueriesBase

__all__ = [
    "IDLE_IN_TRANSACTION",
    "ORPHANED_AFTER",
    "Claimed",
    "ScheduleInfo",
    "ScheduleQueries",
    "ScheduleState",
    "TickQueries",
]

# A schedule that no running worker has declared for this long is shown as orphaned (workers
# that declare it say so at least every minute).
ORPHANED_AFTER = timedelta(minutes=5)

# A worker that stops while it holds a schedule's row (frozen, or cut off) loses its session
# after this long idle in the claim's transaction: the lock goes, another worker claims.
IDLE_IN_TRANSACTION = "10s"


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """A schedule as stored in the database (``Queries.schedules()``).

    ``next_tick``: the next tick to handle. ``last_tick`` and ``last_job_id``: the last tick
    enqueued and the last job enqueued (a tick's, or a manual run's), whose status is
    ``last_status`` (None once its log row is pruned). ``seen``: when a running worker last
    declared it; ``orphaned``: none has for ``ORPHANED_AFTER``.
    """

    name: str
    expression: str
    timezone: str
    catch_up: CatchUp
    catch_up_limit: int
    priority: int
    payload: bytes | None
    paused: bool
    next_tick: datetime
    last_tick: datetime | None
    last_job_id: JobId | None
    last_status: JobStatus | None
    declared: datetime
    seen: datetime
    created: datetime
    orphaned: bool

    @classmethod
    def from_row(cls, row: dict[str, Any]) -> ScheduleInfo:
        payload = row["payload"]
        status = row["last_status"]
        return cls(
            name=row["name"],
            expression=row["expression"],
            timezone=row["timezone"],
            catch_up=row["catch_up"],
            catch_up_limit=row["catch_up_limit"],
            priority=row["priority"],
            payload=None if payload is None else bytes(payload),
            paused=row["paused"],
            next_tick=row["next_tick"],
            last_tick=row["last_tick"],
            last_job_id=row["last_job_id"],
            last_status=None if status is None else JobStatus(status),
            declared=row["declared"],
            seen=row["seen"],
            created=row["created"],
            orphaned=bool(row["orphaned"]),
        )


class ScheduleQueries(QueriesBase):
    """What operators do with schedules (``pgq-sync schedules ...``)."""

    def schedules(self, names: Sequence[str] | None = None) -> list[ScheduleInfo]:
        """The schedules in the database (all, or those named), by name."""
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                self._sql.list_schedules,
                self._params(
                    names=None if names is None else list(names), orphaned_after=ORPHANED_AFTER
                ),
            )
            return [ScheduleInfo.from_row(row) for row in cur.fetchall()]

    def pause_schedule(self, name: str) -> None:
        """Stop enqueueing the schedule's ticks: those that fall while it is paused are
        skipped (ScheduleNotFoundError if there is no such schedule)."""
        self._one(self._sql.pause_schedule, name, paused=True)

    def resume_schedule(self, name: str) -> datetime:
        """Enqueue the schedule's ticks again, from the first one after now (the ticks that
        fell while it was paused are skipped); return its next tick. Needs croniter."""
        with self._conn() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.lock_one_schedule, self._params(name=name))
            row = cur.fetchone()
            if row is None:
                raise ScheduleNotFoundError(self._unknown(name))
            expression, zone, now = row
            first = Cron(expression, zone).next_after(now)
            cur.execute(self._sql.resume_schedule, {"name": name, "next_tick": first})
            resumed = cur.fetchone()
            assert resumed is not None
        return resumed[0]  # type: ignore[no-any-return]

    def run_schedule(self, name: str) -> JobId:
        """Enqueue one job of the schedule now, besides its ticks (the next tick is not
        moved); return its id."""
        (job_id,) = self._one(self._sql.run_schedule, name)
        return int(job_id)

    def remove_schedule(self, name: str) -> None:
        """Delete the schedule's row (an orphaned one; a running worker that still declares
        it creates it again)."""
        self._one(self._sql.remove_schedule, name)

    def _one(self, statement: bytes, name: str, **params: Any) -> tuple[Any, ...]:
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(statement, self._params(name=name, **params))
            row = cur.fetchone()
        if row is None:
            raise ScheduleNotFoundError(self._unknown(name))
        return row

    def _unknown(self, name: str) -> str:
        return (
            f"no schedule named {name!r} in schema {self.settings.schema!r}: "
            "`pgq-sync schedules` lists them"
        )


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
    return Jsonb({"schedule": name, "tick": tick.astimezone(timezone.utc).isoformat()})


class TickQueries(QueriesBase):
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
        row (it is claiming them) or the schedule has no row."""
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
