"""The engine's own statements: claims, outcomes, heartbeats, releases, limits, and the
worker's row in the workers registry.

A private collaborator of the worker (:mod:`pgqueue_sync.engine.worker`), which runs them
over its own connections; they are not part of the public :class:`~pgqueue_sync.Queries`.
"""

from __future__ import annotations

import functools
import math
import operator
import threading
import uuid
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row
from psycopg.types.json import Jsonb

from pgqueue_sync import binary
from pgqueue_sync.db import Connection
from pgqueue_sync.errors import SchemaNotInstalledError
from pgqueue_sync.models import CLAIM_COLUMNS, Completed, Job, JobId, LimitedClaim, Outcome
from pgqueue_sync.schema_queries import SchemaQueries

__all__ = ["PRUNE_BATCH", "Store", "storable_text"]

_JOB_ID = operator.attrgetter("job_id")
_DUE_ORDER = operator.attrgetter("execute_after", "id")
_PRIORITY = operator.attrgetter("priority")
_UPDATED = operator.itemgetter(CLAIM_COLUMNS.index("updated"))
# An Outcome's fields in the order of the complete statement's arrays.
_OUTCOME_COLUMNS = operator.attrgetter(
    "job_id", "attempt", "status", "duration", "traceback", "result", "value_json", "delay"
)


@functools.lru_cache(maxsize=64)
def _packed_names(entrypoints: tuple[str, ...]) -> binary.TextArray:
    """A claim's entrypoints as a packed text[] (the same few lists, claim after claim)."""
    return binary.pack_text(entrypoints)


# Log rows deleted per statement when the log is pruned.
PRUNE_BATCH = 10_000


def storable_text(text: str | None) -> str | None:
    """``text`` as PostgreSQL's text type accepts it: NUL and lone surrogates, which it
    refuses, are written as the escapes ``\\x00`` and ``\\udcff`` (visible, never dropped)."""
    if text is None or (text.isascii() and "\x00" not in text):
        return text
    text = text.replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")


class Store(SchemaQueries):
    """What a worker asks of the database (and, from SchemaQueries, ``verify``)."""

    # True on the fetch queries of a worker whose connection keeps no session settings (a
    # transaction pooler): each claim then turns synchronous_commit off for itself.
    async_commit_claims = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._cursors = threading.local()  # each thread's cursor (_cursor)

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
        with self._conn(conn) as c:
            cur = self._cursor(c)
            cur.execute(
                self._sql.dequeue_async_commit if self.async_commit_claims else self._sql.dequeue,
                self._params(
                    limit=limit,
                    fresh_limit=fresh_limit,
                    entrypoints=_packed_names(tuple(entrypoints)),
                    worker_id=worker_id,
                    retry_timer=retry_timer,
                ),
            )
            rows = cur.fetchall()
            # The claim's now(), carried by one row only (sql/__init__.py: _CLAIM_EXPRESSIONS).
            claimed_at = next(filter(None, map(_UPDATED, rows)), None)
            if claimed_at is None:
                if rows:
                    raise RuntimeError("a claim returned jobs without the claim's time")
                return []
            jobs = [Job.from_claim(row, worker_id, claimed_at) for row in rows]
        # Priority first, then FIFO: two stable sorts on C-level keys, no lambda per job.
        jobs.sort(key=_DUE_ORDER)
        jobs.sort(key=_PRIORITY, reverse=True)
        return jobs

    def _cursor(self, conn: Connection) -> psycopg.Cursor[tuple[Any, ...]]:
        """This thread's cursor on ``conn`` for claims and completions, made once per
        connection: a new cursor per statement sets up its loaders and dumpers anew (about
        25 us a claim). Binary results and tuple rows: a claim of 100 jobs spent most of its
        Python time parsing text (timestamps, bytea in hex) and building dicts. It sends
        packed arrays (:mod:`pgqueue_sync.binary`)."""
        cur: psycopg.Cursor[tuple[Any, ...]] | None = getattr(self._cursors, "cursor", None)
        if cur is None or cur.closed or cur.connection is not conn:
            cur = conn.cursor(row_factory=tuple_row, binary=True)
            binary.register(cur)
            self._cursors.cursor = cur
        return cur

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
        # The outcomes' columns, transposed in C (no Python step per outcome and column).
        ids, attempts, statuses, durations, tracebacks, results, values, delays = zip(
            *map(_OUTCOME_COLUMNS, sorted(outcomes, key=_JOB_ID)), strict=True
        )
        if tracebacks.count(None) != len(tracebacks):  # most outcomes have none
            tracebacks = tuple(map(storable_text, tracebacks))
        # The arrays travel in binary, each packed in one step (pgqueue_sync/binary.py): psycopg
        # writes a list element by element, half of a flush's CPU.
        params = self._params(
            worker_id=worker_id,
            ids=binary.pack_int8(ids),
            attempts=binary.pack_int4(attempts),
            statuses=binary.pack_text(statuses),  # a str enum: its value
            durations=binary.pack_float8(durations),
            tracebacks=binary.pack_text(tracebacks),
            results=binary.pack_bytea(results),
            values=binary.pack_jsonb(values),
            delays=binary.pack_float8(delays),
        )
        with self._conn() as conn:
            cur = self._cursor(conn)
            cur.execute(self._sql.complete, params)
            row = cur.fetchone()
        assert row is not None
        finished, retried, _, _ = row
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

    def notify(self, payload: str) -> None:
        """Send one event on the queue's channel (SchemaNotInstalledError once the queue's
        tables are gone: the worker's periodic probe notices a dropped queue this way)."""
        self._notify(payload)

    def prune_log(self, older_than: timedelta) -> int:
        """Delete log rows older than ``older_than``, in batches; return how many."""
        return self._prune_log(older_than, PRUNE_BATCH)

    # -- the workers registry ------------------------------------------------------------

    def worker_beat(self, row: Mapping[str, Any], forget_after: timedelta) -> frozenset[str]:
        """Write the worker's registry row (insert or refresh; ``options`` as JSON), forget
        rows of workers lost for longer than ``forget_after``; return which of the worker's
        entrypoints are paused."""
        params = {**row, "options": Jsonb(row["options"])}
        (paused,) = self._row(self._sql.worker_beat, forget_after=forget_after, **params)
        return frozenset(paused or ())

    def paused_of(self, entrypoints: Sequence[str]) -> frozenset[str]:
        """Which of ``entrypoints`` are paused."""
        (paused,) = self._row(self._sql.worker_paused, entrypoints=list(entrypoints))
        return frozenset(paused or ())

    def worker_gone(self, worker_id: uuid.UUID) -> None:
        """Remove the worker's registry row (a clean stop)."""
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.worker_gone, {"id": worker_id})
