"""Queries: every database operation of the queue, over a Driver.

Producers use ``enqueue`` and the inspection methods; the worker engine uses ``dequeue``,
``complete``, ``heartbeat`` and ``release`` over its own connections.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import uuid
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from psycopg.rows import dict_row, tuple_row
from psycopg.types.json import Jsonb

from .clock import Clock, SystemClock
from .db import Connection, Driver
from .errors import (
    ConfigurationError,
    InvalidPayloadError,
    PayloadTooLargeError,
    SchemaNotInstalledError,
    SchemaVersionError,
    UnknownEntrypointError,
    translate_errors,
)
from .models import Job, JobId, JobStatus, LogEntry, QueueStatistic
from .settings import Settings, validate_entrypoint
from .sql import SCHEMA_VERSION, statements

__all__ = ["COPY_THRESHOLD", "Outcome", "Queries"]

logger = logging.getLogger("pgqueue_sync")

# Lists at least this long are written with COPY (ids reserved first); shorter ones with
# one INSERT ... SELECT FROM unnest(...). Both are a single statement on the server.
COPY_THRESHOLD = 256

_INT32 = (-(2**31), 2**31 - 1)
MAX_DEDUPE_KEY_LENGTH = 512


@dataclasses.dataclass(frozen=True)
class Outcome:
    """How one attempt of a job ended, as the worker reports it."""

    job_id: JobId
    attempt: int
    status: JobStatus
    duration: float
    traceback: str | None = None
    result: bytes | None = None


Payload = bytes | bytearray | memoryview | None
When = datetime | timedelta | None


def _as_list(value: Any, n: int, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigurationError(
                f"enqueue got {n} entrypoints but {len(value)} {what}: the lists must be "
                "the same length"
            )
        return list(value)
    return [value] * n


class Queries:
    """The queue's database operations. ``qm.queries`` is one of these."""

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
    def _conn(self, connection: Connection | None = None) -> Iterator[Connection]:
        with translate_errors(schema=self.settings.schema):
            if connection is not None:
                yield connection
            else:
                with self.driver.connection() as conn:
                    yield conn

    def _params(self, **params: Any) -> dict[str, Any]:
        params["now"] = self.clock.now()
        return params

    # -- schema --------------------------------------------------------------------------

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
            cur.execute(
                self._sql.table_exists, {"name": self.settings.ident("version").as_string(None)}
            )
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
        headers: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        connection: Connection | None = None,
    ) -> list[JobId]:
        """Add jobs to the queue and return their ids, in the order given.

        Pass scalars for one job, or parallel lists for many (``priority``,
        ``execute_after`` and ``headers`` may stay scalars and apply to all). The jobs are
        written in one statement (COPY for long lists). With ``connection=``, the insert
        runs in that connection's current transaction: the jobs exist only if it commits.

        ``execute_after`` is a delay (timedelta) or a time (aware datetime) before which the
        job is not run.
        """
        if isinstance(entrypoint, str):
            if isinstance(payload, (list, tuple)):
                raise ConfigurationError(
                    "enqueue got one entrypoint and a list of payloads: pass a list of "
                    "entrypoints too"
                )
            entrypoints = [entrypoint]
        elif isinstance(entrypoint, (list, tuple)):
            entrypoints = list(entrypoint)
        else:
            raise ConfigurationError(
                f"entrypoint must be a str or a list of str, not {type(entrypoint).__name__}"
            )
        n = len(entrypoints)
        if n == 0:
            return []
        payloads = (
            _as_list(payload, n, "payloads") if isinstance(entrypoint, list | tuple) else [payload]
        )
        priorities = _as_list(priority, n, "priorities")
        whens = _as_list(execute_after, n, "execute_after values")
        keys = _as_list(dedupe_key, n, "dedupe keys")
        heads = _as_list(headers, n, "headers")

        self._check_entrypoints(entrypoints)
        blobs = [self._check_payload(p, i) for i, p in enumerate(payloads)]
        for i, prio in enumerate(priorities):
            if (
                isinstance(prio, bool)
                or not isinstance(prio, int)
                or not _INT32[0] <= prio <= _INT32[1]
            ):
                raise ConfigurationError(f"priority #{i} must be a 32-bit int, got {prio!r}")
        ats: list[datetime | None] = []
        delays: list[timedelta | None] = []
        for i, when in enumerate(whens):
            if when is None:
                ats.append(None)
                delays.append(None)
            elif isinstance(when, datetime):
                if when.tzinfo is None or when.utcoffset() is None:
                    raise ConfigurationError(
                        f"execute_after #{i} is a naive datetime: pass an aware one "
                        "(e.g. datetime.now(timezone.utc) + ...) or a timedelta"
                    )
                ats.append(when)
                delays.append(None)
            elif isinstance(when, timedelta):
                ats.append(None)
                delays.append(when)
            else:
                raise ConfigurationError(
                    f"execute_after #{i} must be a timedelta, an aware datetime or None, "
                    f"not {type(when).__name__}"
                )
        for i, key in enumerate(keys):
            if key is not None and (
                not isinstance(key, str) or not 0 < len(key) <= MAX_DEDUPE_KEY_LENGTH
            ):
                raise ConfigurationError(
                    f"dedupe_key #{i} must be a non-empty str of at most "
                    f"{MAX_DEDUPE_KEY_LENGTH} characters"
                )
        jsons: list[Jsonb | None] = []
        for i, head in enumerate(heads):
            if head is not None and not isinstance(head, Mapping):
                raise ConfigurationError(f"headers #{i} must be a mapping or None")
            jsons.append(None if head is None else Jsonb(dict(head)))

        with self._conn(connection) as conn:
            if n >= COPY_THRESHOLD and all(k is None for k in keys):
                return self._enqueue_copy(conn, entrypoints, blobs, priorities, ats, delays, jsons)
            with conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(
                    self._sql.enqueue,
                    self._params(
                        priorities=priorities,
                        entrypoints=entrypoints,
                        payloads=blobs,
                        ats=ats,
                        delays=delays,
                        dedupe_keys=keys,
                        headers=jsons,
                    ),
                )
                return [row[0] for row in cur.fetchall()]

    def _enqueue_copy(
        self,
        conn: Connection,
        entrypoints: list[str],
        payloads: list[bytes | None],
        priorities: list[int],
        ats: list[datetime | None],
        delays: list[timedelta | None],
        headers: list[Jsonb | None],
    ) -> list[JobId]:
        n = len(entrypoints)
        with conn.transaction(), conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                self._sql.reserve_ids,
                self._params(sequence=self._jobs_sequence(conn), count=n),
            )
            rows = cur.fetchall()
            now: datetime = rows[0][0]
            ids: list[JobId] = [row[1] for row in rows]
            with cur.copy(self._sql.copy_jobs) as copy:
                copy.set_types(["int8", "int4", "text", "bytea", "timestamptz", "text", "jsonb"])
                for i in range(n):
                    at = ats[i]
                    if at is None:
                        delay = delays[i]
                        at = now if delay is None else now + delay
                    copy.write_row(
                        (ids[i], priorities[i], entrypoints[i], payloads[i], at, None, headers[i])
                    )
        return ids

    def _jobs_sequence(self, conn: Connection) -> str:
        if self._sequence is None:
            with conn.cursor(row_factory=tuple_row) as cur:
                cur.execute(self._sql.jobs_sequence)
                row = cur.fetchone()
                assert row is not None
                self._sequence = str(row[0])
        return self._sequence

    def _check_entrypoints(self, entrypoints: list[str]) -> None:
        for name in set(entrypoints):
            validate_entrypoint(name)
        if self._known_entrypoints is None:
            return
        known = self._known_entrypoints()
        if not known:
            return
        unknown = sorted(set(entrypoints) - set(known))
        if unknown:
            raise UnknownEntrypointError(
                f"no handler is registered for entrypoint(s) {', '.join(map(repr, unknown))}; "
                f"known: {', '.join(sorted(known))}. Register it with @qm.entrypoint(...), or "
                "create the QueueManager with check_entrypoints=False to enqueue for other "
                "services"
            )

    def _check_payload(self, payload: object, index: int) -> bytes | None:
        if payload is None:
            return None
        if isinstance(payload, bytes):
            blob = payload
        elif isinstance(payload, (bytearray, memoryview)):
            blob = bytes(payload)
        else:
            hint = " (encode it, e.g. text.encode())" if isinstance(payload, str) else ""
            raise InvalidPayloadError(
                f"payload #{index} must be bytes, bytearray, memoryview or None, "
                f"not {type(payload).__name__}{hint}"
            )
        limit = self.settings.max_payload_bytes
        if len(blob) > limit:
            raise PayloadTooLargeError(
                f"payload #{index} is {len(blob)} bytes, over the limit of {limit} bytes "
                "(Settings.max_payload_bytes / PGQUEUE_MAX_PAYLOAD_BYTES); store large data "
                "elsewhere and enqueue a reference to it"
            )
        return blob

    # -- inspection ----------------------------------------------------------------------

    def queue_size(self) -> list[QueueStatistic]:
        """How many jobs are queued, picked (or failed), per entrypoint and status."""
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

    def log(
        self,
        limit: int = 100,
        *,
        entrypoint: str | Sequence[str] | None = None,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        job_ids: Sequence[JobId] | None = None,
    ) -> list[LogEntry]:
        """The most recent recorded outcomes, newest first, optionally filtered."""
        names = [entrypoint] if isinstance(entrypoint, str) else entrypoint
        statuses = [status] if isinstance(status, (str, JobStatus)) else status
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                self._sql.log_tail,
                {
                    "limit": limit,
                    "entrypoints": None if names is None else list(names),
                    "statuses": None if statuses is None else [str(JobStatus(s)) for s in statuses],
                    "job_ids": None if job_ids is None else list(job_ids),
                },
            )
            return [LogEntry.from_row(row) for row in cur.fetchall()]

    def get_jobs(self, ids: Sequence[JobId]) -> list[Job]:
        """The jobs still in the queue table among ``ids`` (finished jobs are in the log)."""
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.get_jobs, {"ids": list(ids)})
            return [Job.from_row(row) for row in cur.fetchall()]

    def notify(self, payload: str) -> None:
        """Send one event on the queue's channel (workers poll on any unknown event)."""
        with self._conn() as conn:
            conn.execute(self._sql.notify, {"payload": payload})

    # -- the worker side -----------------------------------------------------------------

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
        if batch_size <= 0 or not entrypoints:
            return []
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                self._sql.dequeue,
                self._params(
                    limit=batch_size,
                    entrypoints=list(entrypoints),
                    worker_id=worker_id,
                    retry_timer=retry_timer,
                ),
            )
            jobs = [Job.from_row(row) for row in cur.fetchall()]
        jobs.sort(key=lambda j: (-j.priority, j.execute_after, j.id))
        return jobs

    def next_due(self, entrypoints: Sequence[str]) -> float | None:
        """Seconds until the earliest queued job of these entrypoints is due (<= 0: one is
        due now; None: none is queued)."""
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.next_due, self._params(entrypoints=list(entrypoints)))
            row = cur.fetchone()
            return None if row is None or row[0] is None else float(row[0])

    def complete(self, worker_id: uuid.UUID, outcomes: Sequence[Outcome]) -> set[JobId]:
        """Record outcomes in one statement; return the ids that were recorded.

        An outcome whose job is no longer held by ``worker_id`` at that attempt (the job was
        re-picked after this worker was presumed dead) is fenced out and not recorded.
        """
        if not outcomes:
            return set()
        ordered = sorted(outcomes, key=lambda o: o.job_id)
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                self._sql.complete,
                self._params(
                    worker_id=worker_id,
                    ids=[o.job_id for o in ordered],
                    attempts=[o.attempt for o in ordered],
                    statuses=[o.status.value for o in ordered],
                    durations=[o.duration for o in ordered],
                    tracebacks=[o.traceback for o in ordered],
                    results=[o.result for o in ordered],
                ),
            )
            return {row[0] for row in cur.fetchall()}

    def heartbeat(self, worker_id: uuid.UUID, ids: Collection[JobId]) -> set[JobId]:
        """Refresh the heartbeat of the jobs ``worker_id`` holds; return those still held."""
        if not ids:
            return set()
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(self._sql.heartbeat, self._params(worker_id=worker_id, ids=sorted(ids)))
            return {row[0] for row in cur.fetchall()}

    def release(
        self,
        worker_id: uuid.UUID,
        ids: Collection[JobId],
        unstarted: Collection[JobId] = (),
    ) -> set[JobId]:
        """Put held jobs back to ``queued`` at once (unstarted ones keep their attempt count)."""
        if not ids:
            return set()
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                self._sql.release,
                self._params(worker_id=worker_id, ids=sorted(ids), unstarted=sorted(unstarted)),
            )
            return {row[0] for row in cur.fetchall()}
