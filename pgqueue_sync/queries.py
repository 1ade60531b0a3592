"""Queries: every database operation of the queue, over a Driver.

Producers use ``enqueue``, ``cancel``, ``requeue``, ``wait_for`` and the inspection methods;
the worker engine uses ``dequeue``, ``complete``, ``heartbeat`` and ``release`` over its own
connections.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import time
from collections.abc import Collection, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import psycopg
import psycopg.errors
from psycopg.rows import dict_row, tuple_row

from .db import Connection
from .enqueue import OnConflict, Payload, Rows, When, build_rows
from .errors import (
    ConfigurationError,
    DuplicateJobError,
    JobNotFoundError,
    SchemaNotInstalledError,
    SchemaVersionError,
    WaitTimeoutError,
    translate_errors,
)
from .models import (
    CancelResult,
    Job,
    JobId,
    JobResult,
    JobStatus,
    LogEntry,
    QueueStatistic,
)
from .sql import SCHEMA_VERSION
from .worker_queries import Completed, LimitedClaim, Outcome, WorkerQueries

__all__ = ["COPY_THRESHOLD", "Completed", "LimitedClaim", "Outcome", "Queries"]

logger = logging.getLogger("pgqueue_sync")

# Lists at least this long are written with COPY (ids reserved first); shorter ones with
# one INSERT ... SELECT FROM unnest(...). Both are a single statement on the server.
COPY_THRESHOLD = 256

_DUPLICATE_KEY = re.compile(r"\(dedupe_key\)=\((.*)\)")


def _seconds(value: timedelta | float) -> float:
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class Queries(WorkerQueries):
    """The queue's database operations. ``qm.queries`` is one of these."""

    # Lists at least this long go through COPY; None: COPY_THRESHOLD. Set on an instance, it
    # sends short lists through COPY (tests run both paths on the same inputs).
    copy_threshold: int | None = None

    def install(self) -> int:
        """Create the queue's schema objects, or upgrade them; return the schema version.

        Safe to run concurrently and repeatedly: an advisory lock serialises installers and
        an installed, current schema is left as it is.
        """
        with self._conn() as conn, conn.transaction():
            conn.execute(self._sql.install_lock, {"key": f"pgqueue-sync:{self.settings.channel}"})
            current = self._installed_version(conn)
            if current is None:
                conn.execute(self._sql.install)
                conn.execute(self._sql.record_version, {"version": SCHEMA_VERSION})
                logger.info(
                    "installed pgqueue-sync schema v%d in %r", SCHEMA_VERSION, self.settings.schema
                )
                return SCHEMA_VERSION
            if current > SCHEMA_VERSION:
                raise SchemaVersionError(self._newer_message(current))
            for version in range(current + 1, SCHEMA_VERSION + 1):
                conn.execute(self._sql.migrations[version])
                conn.execute(self._sql.record_version, {"version": version})
                logger.info("upgraded pgqueue-sync schema to v%d", version)
            return SCHEMA_VERSION

    def uninstall(self) -> None:
        """Drop the queue's tables, function and type (jobs and log are lost)."""
        with self._conn() as conn, conn.transaction():
            conn.execute(self._sql.uninstall)

    def verify(self) -> int:
        """Check the schema is installed and current; return its version.

        Raises SchemaNotInstalledError or SchemaVersionError with what to do.
        """
        with self._conn() as conn:
            current = self._installed_version(conn)
        if current is None:
            raise SchemaNotInstalledError(
                f"schema not installed in schema {self.settings.schema!r} "
                f"(prefix {self.settings.prefix!r}): run `pgq-sync install` "
                "(or `qm.queries.install()`)"
            )
        if current > SCHEMA_VERSION:
            raise SchemaVersionError(self._newer_message(current))
        if current < SCHEMA_VERSION:
            raise SchemaVersionError(
                f"the installed queue schema is v{current}, this pgqueue-sync needs "
                f"v{SCHEMA_VERSION}: run `pgq-sync install` to upgrade it"
            )
        return current

    def _newer_message(self, current: int) -> str:
        return (
            f"the installed queue schema is v{current}, newer than this pgqueue-sync "
            f"(v{SCHEMA_VERSION}): upgrade pgqueue-sync"
        )

    def _installed_version(self, conn: Connection) -> int | None:
        with conn.cursor(row_factory=tuple_row) as cur:
            name = self.settings.ident("version").as_string(None)
            cur.execute(self._sql.table_exists, {"name": name})
            row = cur.fetchone()
            if not row or not row[0]:
                return None
            cur.execute(self._sql.current_version)
            row = cur.fetchone()
            return None if row is None or row[0] is None else int(row[0])

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
        written in one statement (COPY for long lists).

        - ``execute_after``: a delay (timedelta) or a time (aware datetime) before which the
          job does not run.
        - ``dedupe_key``: at most one queued-or-running job per key. A key that is taken
          raises DuplicateJobError (nothing is written), or with ``on_conflict="skip"`` the
          job is not added and the id of the job holding the key is returned in its place.
        - ``headers``: a small JSON map kept with the job and in the log.
        - ``connection``: a connection (or cursor) whose open transaction the insert joins:
          the jobs exist, and workers wake, only if it commits.
        """
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
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.enqueue, self._params(**rows.params()))
            return [row[0] for row in cur.fetchall()]

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
        with conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.enqueue_skip_duplicates, self._params(**rows.params()))
            inserted = cur.fetchall()
            by_key = {key: job_id for job_id, key in inserted if key is not None}
            unkeyed = iter([job_id for job_id, key in inserted if key is None])
            taken = sorted({k for k in rows.dedupe_keys if k is not None and k not in by_key})
            if taken:
                cur.execute(self._sql.jobs_by_dedupe_key, {"keys": taken})
                by_key.update({key: job_id for job_id, key in cur.fetchall()})
        ids: list[JobId] = []
        for key in rows.dedupe_keys:
            ids.append(next(unkeyed) if key is None else by_key[key])
        return ids

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
            ats = [
                at if at is not None else now if delay is None else now + delay
                for at, delay in zip(rows.ats, rows.delays, strict=True)
            ]
            with cur.copy(self._sql.copy_jobs) as copy:
                copy.set_types(["int8", "int4", "text", "bytea", "timestamptz", "text", "jsonb"])
                write = copy.write_row
                for row in zip(
                    ids,
                    rows.priorities,
                    rows.entrypoints,
                    rows.payloads,
                    ats,
                    rows.dedupe_keys,
                    rows.headers,
                    strict=True,
                ):
                    write(row)
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
        """
        canceled, requested, _, _ = self._row(self._sql.cancel, ids=sorted(set(job_ids)))
        return CancelResult(sorted(canceled or []), sorted(requested or []))

    def requeue(self, job_ids: Collection[JobId]) -> list[JobId]:
        """Put ``failed`` jobs back in the queue with a fresh count of attempts."""
        requeued, _ = self._row(self._sql.requeue, ids=sorted(set(job_ids)))
        return sorted(requeued or [])

    def wait_for(
        self, job_ids: Sequence[JobId], timeout: timedelta | float | None = None
    ) -> list[JobResult]:
        """Block until these jobs have finished; return their results, in the same order.

        Woken by NOTIFY when outcomes are written (no polling). Raises JobNotFoundError for
        an id that is neither queued nor logged, and WaitTimeoutError (with the jobs that
        did finish) when ``timeout`` runs out.
        """
        return self._wait_for(job_ids, timeout, None)

    def _wait_for(
        self,
        job_ids: Sequence[JobId],
        timeout: timedelta | float | None,
        stop: threading.Event | None,
    ) -> list[JobResult]:
        """``wait_for``, which also gives up (raising WaitTimeoutError) once ``stop`` is set:
        the async shim sets it when the awaiting task is cancelled, so no thread lingers."""
        ids = list(dict.fromkeys(job_ids))
        deadline = None if timeout is None else time.monotonic() + _seconds(timeout)
        done: dict[JobId, JobResult] = {}
        with translate_errors(schema=self.settings.schema):
            conn = self.driver.connect("wait")
            try:
                conn.execute(self._sql.listen)
                found = {row[0] for row in conn.execute(self._sql.known_ids, {"ids": ids})}
                if len(found) < len(ids):
                    missing = sorted(set(ids) - found)
                    raise JobNotFoundError(f"no job with id(s) {missing} in the queue or log")
                while True:
                    pending = [i for i in ids if i not in done]
                    with conn.cursor(row_factory=dict_row) as cur:
                        cur.execute(self._sql.results, {"ids": pending})
                        for row in cur.fetchall():
                            done[row["job_id"]] = JobResult.from_entry(LogEntry.from_row(row))
                    if len(done) == len(ids):
                        return [done[i] for i in ids]
                    remaining = 30.0 if deadline is None else deadline - time.monotonic()
                    if remaining <= 0 or (stop is not None and stop.is_set()):
                        raise WaitTimeoutError(
                            f"{len(ids) - len(done)} of {len(ids)} job(s) still unfinished",
                            dict(done),
                        )
                    self._wait_done_event(conn, set(pending), min(remaining, 30.0), stop)
            finally:
                conn.close()

    def _wait_done_event(
        self,
        conn: Connection,
        pending: set[JobId],
        timeout: float,
        stop: threading.Event | None = None,
    ) -> None:
        """Return when a NOTIFY may concern ``pending``, after ``timeout``, or soon after
        ``stop`` is set (the wait is then sliced into short waits on the socket)."""
        end = time.monotonic() + timeout
        while True:
            left = end - time.monotonic()
            if left <= 0 or (stop is not None and stop.is_set()):
                return
            for notify in conn.notifies(timeout=left if stop is None else min(left, 0.1)):
                try:
                    event = json.loads(notify.payload)
                except ValueError:
                    return
                if not isinstance(event, dict) or event.get("type") != "done":
                    continue
                ids = event.get("ids")
                if ids is None or pending.intersection(ids):
                    return

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
        """Delete queued (not running) jobs, of the given entrypoints or all; return how many."""
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
        """Recorded outcomes, newest first, filtered by entrypoint, status, job, or time."""
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
        """Delete log rows older than ``older_than``, in batches; return how many."""
        total = 0
        while True:
            with self._conn() as conn, conn.cursor() as cur:
                cur.execute(
                    self._sql.prune_log, self._params(older_than=older_than, batch=batch_size)
                )
                total += cur.rowcount
                if cur.rowcount < batch_size:
                    return total

    def notify(self, payload: str) -> None:
        """Send one event on the queue's channel."""
        with self._conn() as conn:
            conn.execute(self._sql.notify, {"payload": payload})

    # -- the worker side -----------------------------------------------------------------
