"""The worker side of the queries: claims, outcomes, heartbeats, releases.

:class:`~pgqueue_sync.queries.Queries` inherits these; the engine calls them over its own
connections. The plumbing shared by every query (connections, error translation, the
clock's timestamps) lives here too.
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .clock import Clock, SystemClock
from .db import Connection, Driver
from .errors import SchemaNotInstalledError, translate_errors
from .models import Job, JobId, JobStatus
from .settings import Settings
from .sql import statements

__all__ = [
    "Completed",
    "LimitedClaim",
    "Outcome",
    "QueriesBase",
    "WorkerQueries",
    "storable_text",
]


def storable_text(text: str | None) -> str | None:
    """``text`` as PostgreSQL's text type accepts it: NUL and lone surrogates, which it
    refuses, are written as the escapes ``\\x00`` and ``\\udcff`` (visible, never dropped)."""
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one attempt of a job ended, as the worker reports it.

    ``status`` is the outcome, or ``QUEUED`` for an attempt to retry after ``delay``
    seconds. ``result`` is a bytes return value, ``value_json`` any other, as JSON text.
    """

    job_id: JobId
    attempt: int
    status: JobStatus
    duration: float
    traceback: str | None = None
    result: bytes | None = None
    value_json: str | None = None
    delay: float = 0.0


@dataclasses.dataclass(frozen=True)
class Completed:
    """Outcomes written by ``Queries.complete``: finished (logged) and retried jobs."""

    finished: set[JobId]
    retried: set[JobId]

    @property
    def recorded(self) -> set[JobId]:
        return self.finished | self.retried


@dataclasses.dataclass(frozen=True)
class LimitedClaim:
    """Jobs claimed for one limited entrypoint, and what held the claim back."""

    jobs: list[Job]
    at_limit: bool
    rate_wait: float | None


class QueriesBase:
    """Connections, error translation and timestamps for every query."""

    def __init__(
        self,
        driver: Driver,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        known_entrypoints: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.driver = driver
        self.settings = settings if settings is not None else Settings.from_env()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._known_entrypoints = known_entrypoints
        self._sql = statements(self.settings)
        self._sequence: str | None = None

    # -- plumbing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _conn(
        self, connection: Connection | psycopg.Cursor[Any] | None = None
    ) -> Iterator[Connection]:
        with translate_errors(schema=self.settings.schema, prefix=self.settings.prefix) as scope:
            if isinstance(connection, psycopg.Cursor):
                scope.connection = connection.connection
                yield connection.connection
            elif connection is not None:
                scope.connection = connection
                yield connection
            else:
                with self.driver.connection() as conn:
                    scope.connection = conn
                    yield conn

    def _params(self, **params: Any) -> dict[str, Any]:
        params["now"] = self.clock.now()
        return params

    def _row(self, statement: bytes, **params: Any) -> tuple[Any, ...]:
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(statement, self._params(**params))
            row = cur.fetchone()
            assert row is not None
            return row

    # -- schema --------------------------------------------------------------------------


class WorkerQueries(QueriesBase):
    """What a worker asks of the database."""

    # True on the fetch queries of a worker whose connection keeps no session settings (a
    # transaction pooler): each claim then turns synchronous_commit off for itself.
    async_commit_claims = False

    def dequeue(
        self,
        batch_size: int,
        entrypoints: Sequence[str],
        worker_id: uuid.UUID,
        retry_timer: timedelta | None = None,
    ) -> list[Job]:
        """Claim up to ``batch_size`` jobs for ``worker_id`` (priority, then FIFO order).

        Also re-claims jobs left ``picked`` whose heartbeat is older than ``retry_timer``.
        """
        return self._dequeue(None, batch_size, batch_size, entrypoints, worker_id, retry_timer)

    def _dequeue(
        self,
        conn: Connection | None,
        limit: int,
        fresh_limit: int,
        entrypoints: Sequence[str],
        worker_id: uuid.UUID,
        retry_timer: timedelta | None,
    ) -> list[Job]:
        if limit <= 0 or not entrypoints:
            return []
        # Binary results and tuple rows: a claim of 100 jobs spent most of its Python time
        # parsing text (timestamps, bytea in hex) and building dicts.
        with self._conn(conn) as c, c.cursor(row_factory=tuple_row, binary=True) as cur:
            cur.execute(
                self._sql.dequeue_async_commit if self.async_commit_claims else self._sql.dequeue,
                self._params(
                    limit=limit,
                    fresh_limit=fresh_limit,
                    entrypoints=list(entrypoints),
                    worker_id=worker_id,
                    retry_timer=retry_timer,
                ),
            )
            jobs = [Job.from_tuple(row) for row in cur.fetchall()]
        jobs.sort(key=lambda j: (-j.priority, j.execute_after, j.id))
        return jobs

    def ensure_statistics(self) -> bool:
        """ANALYZE the queue table if it holds jobs but was never analyzed; return whether
        it did. Until then a claim planned for its parameters can sort the whole backlog
        (autovacuum's first ANALYZE of a new table comes up to a minute later)."""
        with self._conn() as conn:
            row = conn.execute(self._sql.needs_statistics).fetchone()
            if row is None or not row[0]:
                return False
            conn.execute(self._sql.analyze_jobs)
            return True

    def ensure_limit_rows(self, entrypoints: Sequence[str]) -> None:
        """Create the shared-state rows of globally limited entrypoints."""
        with self._conn() as conn:
            conn.execute(self._sql.ensure_limit_rows, self._params(entrypoints=list(entrypoints)))

    def dequeue_limited(
        self,
        entrypoint: str,
        want: int,
        worker_id: uuid.UUID,
        retry_timer: timedelta | None,
        *,
        concurrency_limit: int | None,
        requests_per_second: float | None,
    ) -> LimitedClaim:
        """Claim up to ``want`` jobs of one entrypoint within its global limits.

        The entrypoint's row is locked for the transaction, so the count of its running
        jobs cannot change under the claim: two workers never exceed the limit together.
        """
        with self._conn() as conn, conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.lock_limit_row, self._params(entrypoint=entrypoint))
            state = cur.fetchone()
            if state is None:
                raise SchemaNotInstalledError(f"no limit row for entrypoint {entrypoint!r}")
            tokens, elapsed = float(state[0]), max(0.0, float(state[1] or 0.0))
            fresh = want
            at_limit = False
            if concurrency_limit is not None:
                cur.execute(self._sql.count_picked, {"entrypoint": entrypoint})
                row = cur.fetchone()
                running = int(row[0]) if row else 0
                fresh = min(fresh, max(0, concurrency_limit - running))
                at_limit = fresh == 0
            if requests_per_second is not None:
                burst = max(1.0, requests_per_second)
                tokens = min(burst, tokens + elapsed * requests_per_second)
                fresh = min(fresh, max(0, math.floor(tokens)))
            jobs = self._dequeue(conn, want, fresh, [entrypoint], worker_id, retry_timer)
            rate_wait = None
            if requests_per_second is not None:
                tokens -= len(jobs)
                cur.execute(
                    self._sql.set_tokens, self._params(entrypoint=entrypoint, tokens=tokens)
                )
                if tokens < 1:
                    rate_wait = (1 - tokens) / requests_per_second
        return LimitedClaim(jobs, at_limit, rate_wait)

    def next_due(self, entrypoints: Sequence[str]) -> float | None:
        """Seconds until the earliest queued job of these entrypoints is due (<= 0: one is
        due now; None: none is queued)."""
        if not entrypoints:
            return None
        (due,) = self._row(self._sql.next_due, entrypoints=list(entrypoints))
        return None if due is None else float(due)

    def complete(self, worker_id: uuid.UUID, outcomes: Sequence[Outcome]) -> Completed:
        """Record outcomes in one statement; return what was recorded.

        An outcome whose job is no longer held by ``worker_id`` at that attempt (the job was
        re-picked after this worker was presumed dead) is fenced out and not recorded.
        """
        if not outcomes:
            return Completed(set(), set())
        ordered = sorted(outcomes, key=lambda o: o.job_id)
        finished, retried, _, _ = self._row(
            self._sql.complete,
            worker_id=worker_id,
            ids=[o.job_id for o in ordered],
            attempts=[o.attempt for o in ordered],
            statuses=[o.status.value for o in ordered],
            durations=[o.duration for o in ordered],
            tracebacks=[storable_text(o.traceback) for o in ordered],
            results=[o.result for o in ordered],
            values=[o.value_json for o in ordered],
            delays=[o.delay for o in ordered],
        )
        return Completed(set(finished or ()), set(retried or ()))

    def recorded(self, worker_id: uuid.UUID, outcomes: Sequence[Outcome]) -> set[JobId]:
        """Which of these outcomes are in the log, written by ``worker_id`` (to settle a
        completion whose commit was lost with its connection)."""
        if not outcomes:
            return set()
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                self._sql.recorded,
                {
                    "worker_id": worker_id,
                    "ids": [o.job_id for o in outcomes],
                    "attempts": [o.attempt for o in outcomes],
                },
            )
            return {row[0] for row in cur.fetchall()}

    def mark_started(self, worker_id: uuid.UUID, job_id: JobId, attempt: int) -> bool:
        """Record that the handler of this attempt starts (done for rescued jobs only, so
        that a worker lost while running it is counted); False if the attempt is no longer
        ``worker_id``'s."""
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                self._sql.mark_started,
                self._params(id=job_id, attempt=attempt, worker_id=worker_id),
            )
            return cur.fetchone() is not None

    def heartbeat(self, worker_id: uuid.UUID, job_ids: Collection[JobId]) -> dict[JobId, bool]:
        """Refresh the heartbeat of jobs ``worker_id`` holds.

        Returns the jobs still held, each with whether its cancellation was requested.
        """
        if not job_ids:
            return {}
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.heartbeat, self._params(worker_id=worker_id, ids=sorted(job_ids)))
            return {row[0]: bool(row[1]) for row in cur.fetchall()}

    def release(
        self,
        worker_id: uuid.UUID,
        job_ids: Collection[JobId],
        unstarted: Collection[JobId] = (),
    ) -> set[JobId]:
        """Put held jobs back to ``queued`` at once (unstarted ones keep their attempt count)."""
        if not job_ids:
            return set()
        released, _ = self._row(
            self._sql.release,
            worker_id=worker_id,
            ids=sorted(job_ids),
            unstarted=sorted(unstarted),
        )
        return set(released or ())
