"""Queries: the queue's public database operations, over a Driver.

Producers use ``enqueue``; operators and applications ``cancel``, ``requeue``, ``wait_for``
and the inspection methods; installers ``install``, ``upgrade`` and ``verify``. The worker
engine's own statements (claims, outcomes, heartbeats) are not here: they are a private
collaborator of the worker, ``pgqueue_sync.engine.store``.
"""

from __future__ import annotations

import contextlib
import logging
import re
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
import psycopg.errors
from psycopg.adapt import PyFormat
from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from . import binary
from .admin import AdminQueries
from .db import Connection
from .enqueue import EnqueueHooks, OnConflict, Payload, Rows, When, build_rows, with_headers
from .errors import ConfigurationError, DatabaseError, DuplicateJobError
from .models import (
    CancelResult,
    Job,
    JobId,
    JobResult,
    JobStatus,
    LogEntry,
    QueueStatistic,
)
from .schedule_queries import ScheduleQueries
from .schema_queries import SchemaQueries
from .waiting import wait_for

__all__ = ["COPY_THRESHOLD", "Queries"]

logger = logging.getLogger(__name__)

# Lists at least this long are written with COPY (ids reserved first, a round trip); shorter
# ones with one INSERT ... SELECT FROM unnest(...) of binary arrays. COPY inserts rows in
# batches, cheaper on the server per row; the INSERT saves the reservation's round trip.
# They cost the same at about 1,500 jobs on a local server (benchmarks/enqueue.py).
COPY_THRESHOLD = 1500

# Rounds of insert-then-look-up before on_conflict="skip" gives up (each round needs a
# holder that finished within the previous one: more than two is already rare).
_SKIP_ROUNDS = 50

_DUPLICATE_KEY = re.compile(r"\(dedupe_key\)=\((.*)\)")


class Queries(SchemaQueries, AdminQueries, ScheduleQueries):
    """The queue's database operations. ``qm.queries`` is one of these.

    Producers enqueue, cancel and wait; operators inspect and repair (status, workers,
    listings, requeue, pause and resume, purge); periodic jobs' schedules are read and
    changed here; installers install, upgrade and verify the schema. Every method takes
    a connection from the driver for the call and gives it back.

    ``Queries(driver, settings)`` gives a producer that registers no handler.
    """

    # Lists at least this long go through COPY; None: COPY_THRESHOLD. Set on an instance, it
    # sends short lists through COPY (tests run both paths on the same inputs).
    copy_threshold: int | None = None
    # One job goes through a single-row INSERT with scalar parameters (dumping the seven
    # one-element arrays cost the client more than the rest of the call). False on an
    # instance sends it through the arrays (tests compare both on the same inputs).
    single_row: bool = True
    # Observers of every enqueue (add_enqueue_hooks); none by default, at no cost.
    enqueue_hooks: Sequence[EnqueueHooks] = ()

    # -- producers -----------------------------------------------------------------------

    def enqueue(
        self,
        entrypoint: str | Sequence[str],
        payload: Payload | Sequence[Payload] = None,
        priority: int | Sequence[int] = 0,
        execute_after: When | Sequence[When] = None,
        *,
        dedupe_key: str | Sequence[str | None] | None = None,
        on_conflict: OnConflict = "raise",
        headers: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        connection: Connection | psycopg.Cursor[Any] | None = None,
    ) -> list[JobId]:
        """Add jobs to the queue and return their ids, in the order given.

        Pass scalars for one job, or parallel lists for many (``priority``,
        ``execute_after`` and ``headers`` may stay scalars and apply to all). The jobs are
        written in one statement (COPY for long lists), all or none; nothing is written
        when an input is refused.

        ```python
        [job_id] = qm.queries.enqueue("fetch", b"payload")
        ids = qm.queries.enqueue(["fetch"] * 3, [b"a", b"b", b"c"], priority=5)
        ```

        Args:
            entrypoint: the entrypoint of the job, or one per job.
            payload: ``bytes`` (or ``bytearray``, ``memoryview``) or None; at most
                ``Settings.max_payload_bytes`` (1 MiB by default).
            priority: higher runs first; among equal priorities, the oldest first.
                Default 0.
            execute_after: a delay (``timedelta``) or a time (aware ``datetime``) before
                which the job does not run; None: due now.
            dedupe_key: at most one queued-or-running job per key. A key that is taken
                raises ``DuplicateJobError``, or see ``on_conflict``. None: no key.
            on_conflict: ``"raise"`` (default), or ``"skip"``: a job whose key is taken is
                not added and the id of the job holding the key is returned in its place.
                If that holder finishes while the call runs, the key is free again: the job
                is added after all and its new id returned. Either way every input gets an
                id.
            headers: a small JSON object kept with the job and in the log (trace context,
                tenant, ...).
            connection: a connection (or cursor) whose open transaction the insert joins:
                the jobs exist, and workers wake, only if it commits. None: the driver's
                own connection, committed at once.

        Returns:
            The new jobs' ids (or, with ``on_conflict="skip"``, the holders' ids), in order.

        Raises:
            InvalidPayloadError: a payload is not bytes or None.
            PayloadTooLargeError: a payload is larger than ``max_payload_bytes``.
            UnknownEntrypointError: no handler is registered for an entrypoint (when the
                manager has handlers and ``check_entrypoints`` is on).
            InvalidEntrypointError: an entrypoint name is invalid.
            ConfigurationError: an input PostgreSQL would refuse, naming the job's index
                (``execute_after`` outside years 1-9999, headers that are not JSON, text
                with a NUL or a lone surrogate), lists of different lengths, or an unknown
                ``on_conflict``.
            DuplicateJobError: a ``dedupe_key`` is taken (with ``on_conflict="raise"``);
                its ``dedupe_keys`` lists them.
            SchemaNotInstalledError: the queue's tables are not installed.
        """
        with contextlib.ExitStack() as stack:
            if self.enqueue_hooks:
                names = [entrypoint] if isinstance(entrypoint, str) else entrypoint
                for hook in self.enqueue_hooks:
                    extra = stack.enter_context(hook.enqueuing(names))
                    if extra:
                        headers = with_headers(headers, extra)
            return self._enqueue(
                entrypoint,
                payload,
                priority,
                execute_after,
                dedupe_key,
                on_conflict,
                headers,
                connection,
            )

    def add_enqueue_hooks(self, hooks: EnqueueHooks) -> None:
        """Have `hooks` observe every `enqueue` from now on (an `EnqueueHooks` of
        `pgqueue_sync.enqueue`; `pgqueue_sync.tracing` uses it)."""
        self.enqueue_hooks = [*self.enqueue_hooks, hooks]

    def _enqueue(
        self,
        entrypoint: str | Sequence[str],
        payload: Payload | Sequence[Payload],
        priority: int | Sequence[int],
        execute_after: When | Sequence[When],
        dedupe_key: str | Sequence[str | None] | None,
        on_conflict: OnConflict,
        headers: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None,
        connection: Connection | psycopg.Cursor[Any] | None,
    ) -> list[JobId]:
        if on_conflict not in ("raise", "skip"):
            raise ConfigurationError("on_conflict must be 'raise' or 'skip'")
        known = self._known_entrypoints() if self._known_entrypoints is not None else None
        rows = build_rows(
            entrypoint,
            payload,
            priority,
            execute_after,
            dedupe_key,
            headers,
            known=known,
            max_payload_bytes=self.settings.max_payload_bytes,
        )
        if not rows:
            return []
        with self._conn(connection) as conn:
            keyed = rows.dedupe_keys.count(None) != len(rows)
            if keyed and on_conflict == "skip":
                return self._enqueue_skipping(conn, rows)
            if keyed:
                return self._enqueue_unique(conn, rows)
            threshold = COPY_THRESHOLD if self.copy_threshold is None else self.copy_threshold
            if len(rows) >= threshold:
                return self._enqueue_copy(conn, rows)
            return self._enqueue_insert(conn, rows)

    def _enqueue_insert(self, conn: Connection, rows: Rows) -> list[JobId]:
        if len(rows) == 1 and self.single_row:
            with conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(self._sql.enqueue_one, self._params(**rows.params_of_one()))
                return [row[0] for row in cur.fetchall()]
        with conn.cursor(row_factory=tuple_row, binary=True) as cur:
            binary.register(cur)
            if rows.plain():
                cur.execute(self._sql.enqueue_plain, self._params(**rows.params_plain()))
            else:
                cur.execute(self._sql.enqueue, self._params(**rows.params()))
            row = cur.fetchone()
            assert row is not None
            ids: list[JobId] = row[0]
            return ids

    def _enqueue_unique(self, conn: Connection, rows: Rows) -> list[JobId]:
        try:
            # A savepoint inside the caller's transaction: a duplicate must not abort it.
            with conn.transaction():
                return self._enqueue_insert(conn, rows)
        except psycopg.errors.UniqueViolation as exc:
            detail = exc.diag.message_detail or ""
            match = _DUPLICATE_KEY.search(detail)
            keys = [match.group(1)] if match else [k for k in rows.dedupe_keys if k]
            raise DuplicateJobError(
                f"a job with dedupe_key {keys[0]!r} is already queued or running (pass "
                "on_conflict='skip' to get its id instead)",
                keys,
            ) from exc

    def _enqueue_skipping(self, conn: Connection, rows: Rows) -> list[JobId]:
        """Insert the jobs whose key is free; return the holder's id for the others.

        The insert and the look-up run in one transaction (a savepoint inside the caller's),
        so the call writes every job or none. A key whose holder finished between the two
        statements is free again: its job is inserted in a new round, in the same
        transaction, and that job's id is returned.
        """
        by_key: dict[str, JobId] = {}
        unkeyed: list[JobId] = []
        todo = rows
        with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            binary.register(cur)
            for _ in range(_SKIP_ROUNDS):
                cur.execute(self._sql.enqueue_skip_duplicates, self._params(**todo.params()))
                for job_id, key in cur.fetchall():  # in id order, which is the input's order
                    if key is None:
                        unkeyed.append(job_id)
                    else:
                        by_key[key] = job_id
                missing = sorted({k for k in todo.dedupe_keys if k is not None} - by_key.keys())
                if missing:
                    cur.execute(self._sql.jobs_by_dedupe_key, {"keys": missing})
                    by_key.update({key: job_id for job_id, key in cur.fetchall()})
                freed = set(missing) - by_key.keys()
                if not freed:
                    break
                todo = rows.take([i for i, k in enumerate(rows.dedupe_keys) if k in freed])
            else:
                raise DatabaseError(
                    f"the holders of dedupe key(s) {sorted(freed)[:5]} kept finishing while "
                    f"this call enqueued in their place ({_SKIP_ROUNDS} rounds): nothing was "
                    "written; try again"
                )
        ids = iter(unkeyed)
        return [next(ids) if key is None else by_key[key] for key in rows.dedupe_keys]

    def _enqueue_copy(self, conn: Connection, rows: Rows) -> list[JobId]:
        # On an autocommit connection outside any transaction block the COPY is atomic by
        # itself and the ids come from a sequence (never rolled back): no BEGIN/COMMIT round
        # trips around them. Otherwise a transaction (or a savepoint in the caller's) holds both.
        idle = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
        block = contextlib.nullcontext() if conn.autocommit and idle else conn.transaction()
        n = len(rows)
        with block, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                self._sql.reserve_ids, self._params(sequence=self._jobs_sequence(conn), count=n)
            )
            reserved = cur.fetchone()
            assert reserved is not None
            now: datetime = reserved[0]
            ids: list[JobId] = sorted(reserved[1])
            try:
                ats = [
                    at if at is not None else now if delay is None else now + delay
                    for at, delay in zip(rows.ats, rows.delays, strict=True)
                ]
            except OverflowError:  # only with a clock far from today: checked in build_rows
                raise ConfigurationError(
                    "execute_after: a delay puts a job past the times it can be due at"
                ) from None
            dump_json = cur.adapters.get_dumper(Jsonb, PyFormat.BINARY)(Jsonb, cur).dump
            chunks = binary.copy_jobs(
                ids,
                rows.priorities,
                rows.entrypoints,
                rows.payloads,
                ats,
                rows.dedupe_keys,
                rows.headers,
                dump_json,  # type: ignore[arg-type]
            )
            with cur.copy(self._sql.copy_jobs) as copy:
                for chunk in chunks:
                    copy.write(chunk)
        return ids

    def _jobs_sequence(self, conn: Connection) -> str:
        if self._sequence is None:
            with conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(self._sql.jobs_sequence)
                row = cur.fetchone()
                assert row is not None
                self._sequence = str(row[0])
        return self._sequence

    # -- control -------------------------------------------------------------------------

    def cancel(self, job_ids: Collection[JobId]) -> CancelResult:
        """Cancel jobs: queued (and failed) ones at once; running ones are asked to stop.

        A running job's handler sees ``ctx.cancelled`` set (threads cannot be killed); if it
        stops by calling ``ctx.check()`` the job ends ``canceled``.

        Args:
            job_ids: the jobs to cancel.

        Returns:
            What was cancelled, what was asked to stop, and the ids that were already
                ``finished`` (nothing to cancel) or ``unknown`` (neither in the queue nor
                in the log).
        """
        canceled, requested, finished, unknown, _, _ = self._row(
            self._sql.cancel, ids=sorted(set(job_ids))
        )
        return CancelResult(
            sorted(canceled or []),
            sorted(requested or []),
            sorted(finished or []),
            sorted(unknown or []),
        )

    def requeue(self, job_ids: Collection[JobId]) -> list[JobId]:
        """Put ``failed`` jobs back in the queue with a fresh count of attempts.

        Args:
            job_ids: the jobs to requeue; those that are not ``failed`` are left alone.

        Returns:
            The ids requeued.
        """
        requeued, _ = self._row(self._sql.requeue, ids=sorted(set(job_ids)))
        return sorted(requeued or [])

    def wait_for(
        self, job_ids: Sequence[JobId], timeout: timedelta | float | None = None
    ) -> list[JobResult]:
        """Block until these jobs have finished; return their results, in the same order.

        Woken by NOTIFY when outcomes are written (no polling). Through a pooler in
        transaction mode without ``listen_dsn`` (where LISTEN cannot work) it polls instead,
        every 50 ms at first and then less often, up to once a second. A job being retried
        has not finished: the wait goes on until its last attempt.

        ```python
        result = qm.queries.wait_for([job_id], timeout=30)[0]
        if result.status == JobStatus.SUCCESSFUL:
            print(result.value)     # a task's return value (result.result for bytes)
        ```

        Args:
            job_ids: the jobs to wait for.
            timeout: the longest wait, in seconds or a ``timedelta``; None (default):
                wait as long as it takes.

        Returns:
            One [`JobResult`][pgqueue_sync.JobResult] per id, in the order of ``job_ids``.

        Raises:
            JobNotFoundError: an id is neither queued nor logged.
            WaitTimeoutError: ``timeout`` ran out; its ``finished`` holds the results of
                the jobs that did finish.
            ConfigurationError: ``timeout`` is negative, NaN or infinite.
        """
        return wait_for(self, job_ids, timeout)

    # -- inspection ----------------------------------------------------------------------

    def queue_size(self) -> list[QueueStatistic]:
        """How many jobs are queued, picked or failed, per entrypoint and status."""
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.queue_size)
            return [
                QueueStatistic(row["entrypoint"], JobStatus(row["status"]), row["count"])
                for row in cur.fetchall()
            ]

    def clear_queue(self, entrypoint: str | Sequence[str] | None = None) -> int:
        """Delete queued (not running) jobs, of the given entrypoints or all.

        Args:
            entrypoint: an entrypoint or a list of them; None: every entrypoint.

        Returns:
            How many jobs were deleted.
        """
        names = [entrypoint] if isinstance(entrypoint, str) else entrypoint
        with self._conn() as conn, conn.cursor() as cur:
            cur.execute(
                self._sql.clear_queue, {"entrypoints": None if names is None else list(names)}
            )
            return cur.rowcount

    def history(
        self,
        limit: int = 100,
        *,
        entrypoint: str | Sequence[str] | None = None,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        job_ids: Sequence[JobId] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LogEntry]:
        """Recorded outcomes, newest first, filtered by entrypoint, status, job, or time.

        ``log`` is the same method, under the name of the log table.

        Args:
            limit: at most this many rows. Default 100.
            entrypoint: only these entrypoints' outcomes.
            status: only these outcomes.
            job_ids: only these jobs' outcomes.
            since: only outcomes written at or after this time.
            until: only outcomes written before this time.

        Returns:
            The log rows, newest first.
        """
        names = [entrypoint] if isinstance(entrypoint, str) else entrypoint
        statuses = [status] if isinstance(status, (str, JobStatus)) else status
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                self._sql.history,
                {
                    "limit": limit,
                    "entrypoints": None if names is None else list(names),
                    "statuses": None if statuses is None else [str(JobStatus(s)) for s in statuses],
                    "job_ids": None if job_ids is None else list(job_ids),
                    "since": since,
                    "until": until,
                },
            )
            return [LogEntry.from_row(row) for row in cur.fetchall()]

    log = history  # the same, under the name of the log table

    def get_jobs(self, job_ids: Collection[JobId]) -> list[Job]:
        """The jobs still in the queue table among ``job_ids`` (finished ones are logged)."""
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.get_jobs, {"ids": list(job_ids)})
            return [Job.from_row(row) for row in cur.fetchall()]

    def prune_log(self, older_than: timedelta, batch_size: int = 10_000) -> int:
        """Delete log rows older than ``older_than``, in batches.

        Args:
            older_than: the age past which rows go.
            batch_size: rows deleted per statement.

        Returns:
            How many rows were deleted.
        """
        return self._prune_log(older_than, batch_size)

    def notify(self, payload: str) -> None:
        """Send one event on the queue's channel.

        Args:
            payload: the event's text.

        Raises:
            SchemaNotInstalledError: the queue's tables are gone.
        """
        self._notify(payload)
