"""What operators do with the schedules of periodic jobs: list, pause, resume, run, remove
(``pgq-sync schedules ...``). ``Queries`` inherits
``ScheduleQueries``; what the workers that declare schedules ask of the database is
the engine's (``pgqueue_sync.engine.schedule_store``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row, tuple_row

from .cron import Cron
from .errors import ScheduleNotFoundError
from .models import JobId, ScheduleInfo
from .querying import QueryBase

__all__ = ["ORPHANED_AFTER", "ScheduleQueries"]

# A schedule that no running worker has declared for this long is shown as orphaned (workers
# that declare it say so at least every minute).
ORPHANED_AFTER = timedelta(minutes=5)


class ScheduleQueries(QueryBase):
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
