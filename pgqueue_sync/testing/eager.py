"""Eager mode: ``enqueue`` runs the handler at once, inline, with no database.

For unit tests without PostgreSQL, as Celery's ``task_always_eager`` and Django's
``ImmediateBackend`` do. It is not the real thing: see ``eager``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import uuid
from collections.abc import Iterator, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg

from pgqueue_sync.context import Context
from pgqueue_sync.db import Connection
from pgqueue_sync.engine.execution import execute
from pgqueue_sync.enqueue import OnConflict, Payload, When, build_rows
from pgqueue_sync.errors import (
    ConfigurationError,
    InvalidStateError,
    JobNotFoundError,
    WaitTimeoutError,
)
from pgqueue_sync.models import Job, JobId, JobResult, JobStatus
from pgqueue_sync.queries import Queries
from pgqueue_sync_aio.queries import AsyncQueries

from .draining import AnyManager, Manager, split
from .outcomes import Capture, JobOutcome

__all__ = ["EagerQueries", "EagerQueue", "eager"]


class EagerQueries(Queries):
    """A ``Queries`` whose ``enqueue`` runs each job's handler inline
    and records how it ended; ``wait_for`` returns those results. It has no database: its
    other methods raise InvalidStateError.

    ``eager`` is True: an integration that would have a job join a transaction of its own
    (the Flask extension's session) leaves it out, so that no database is touched.
    """

    eager = True

    def __init__(self, manager: Manager, *, check_entrypoints: bool, raise_errors: bool) -> None:
        super().__init__(
            manager.driver,
            manager.settings,
            clock=manager.clock,
            known_entrypoints=(lambda: manager.entrypoints.keys())  # noqa: PLW0108 - read at each call
            if check_entrypoints
            else None,
        )
        self._manager = manager
        self.capture = Capture({})
        self.raise_errors = raise_errors
        self.outcomes: list[JobOutcome] = []
        self.results: dict[JobId, JobResult] = {}
        self.worker_id = uuid.uuid4()
        self._ids = itertools.count(1)

    @contextlib.contextmanager
    def _conn(self, connection: Connection | psycopg.Cursor[Any] | None = None) -> Iterator[Any]:
        raise InvalidStateError(
            "eager mode runs jobs inline when they are enqueued and has no database: only "
            "enqueue and wait_for work (a test that needs the queue's tables uses the "
            "pgqueue fixture and its drain())"
        )
        yield  # type: ignore[unreachable]  # a generator, for contextmanager

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
        """Check the arguments as ``Queries.enqueue`` does, then run each job's handler now,
        in order; the jobs' ids. ``execute_after``, ``connection`` and ``dedupe_key`` change
        nothing: the job runs at once, whether the caller's transaction commits or not."""
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
        now = self._now()
        jobs = [
            Job(
                id=next(self._ids),
                priority=rows.priorities[i],
                created=now,
                updated=now,
                heartbeat=now,
                execute_after=rows.ats[i] or now + (rows.delays[i] or timedelta()),
                status=JobStatus.PICKED,
                entrypoint=rows.entrypoints[i],
                payload=rows.payloads[i],
                attempts=1,
                worker_id=self.worker_id,
                dedupe_key=rows.dedupe_keys[i],
                headers=None if rows.headers[i] is None else rows.headers[i].obj,  # type: ignore[union-attr]
            )
            for i in range(len(rows))
        ]
        for job in jobs:
            self._run(job)
        return [job.id for job in jobs]

    def _run(self, job: Job) -> None:
        entry = self._manager.entrypoints.get(job.entrypoint)  # registered now
        if entry is not None:
            entry = self.capture.wrap(entry)
        ctx = Context(job, self.worker_id)
        outcome = execute(
            entry, job, ctx, self.clock, max_result_bytes=self.settings.max_payload_bytes
        )
        report = self.capture.outcome(job, outcome)
        self.outcomes.append(report)
        if outcome.status is not JobStatus.QUEUED:
            self.results[job.id] = JobResult(
                job.id,
                outcome.status,
                report.result,
                report.value,
                report.traceback,
                self._now(),
            )
        if self.raise_errors and report.error is not None:
            raise report.error

    def wait_for(
        self, job_ids: Sequence[JobId], timeout: timedelta | float | None = None
    ) -> list[JobResult]:
        """The results of jobs run in eager mode (JobNotFoundError for other ids;
        WaitTimeoutError for a job whose attempt failed and that would be retried)."""
        ids = list(job_ids)
        unknown = sorted(i for i in ids if i <= 0 or i > self._last_id())
        if unknown:
            raise JobNotFoundError(f"no job with id(s) {unknown} was enqueued in eager mode")
        pending = [i for i in ids if i not in self.results]
        if pending:
            raise WaitTimeoutError(
                f"{len(pending)} of {len(ids)} job(s) failed and would be retried (eager mode "
                "does not run retries)",
                {i: r for i, r in self.results.items() if i in ids},
            )
        return [self.results[i] for i in ids]

    def _now(self) -> datetime:
        return self.clock.now() or datetime.now(timezone.utc)

    def _last_id(self) -> int:
        return self.outcomes[-1].job.id if self.outcomes else 0


class AsyncEagerQueries(AsyncQueries):
    """The ``EagerQueries`` of an AsyncQueueManager, awaitable."""

    sync: EagerQueries

    async def wait_for(
        self, job_ids: Sequence[JobId], timeout: timedelta | float | None = None
    ) -> list[JobResult]:
        return self.sync.wait_for(job_ids, timeout)


@dataclasses.dataclass
class EagerQueue:
    """What ``eager`` yields: the jobs run so far, and the queries that ran them.

    Attributes:
        queries: the eager queries in place of ``qm.queries`` within the block.
    """

    queries: EagerQueries

    @property
    def outcomes(self) -> list[JobOutcome]:
        """How each job enqueued so far ended, in the order run."""
        return self.queries.outcomes


@contextlib.contextmanager
def eager(manager: AnyManager, *, raise_errors: bool = False) -> Iterator[EagerQueue]:
    """Within the block, enqueueing on ``manager`` (``qm.queries.enqueue``, a task's
    ``enqueue``) runs each job's handler at once, inline, with no database; the yielded
    ``EagerQueue`` lists how each ended. ``raise_errors=True``: a handler's exception
    is raised by the ``enqueue`` that ran it.

    Not the real thing. It checks what ``enqueue`` checks (payloads, a task's arguments
    against its signature and JSON, unknown entrypoints) and runs the handler as a worker
    does (its result encoded strictly, a retry policy consulted), but: nothing is written
    or read back (``qm.queries``' other methods raise InvalidStateError); no transaction
    (a job enqueued with ``connection=`` runs even if that transaction rolls back); no
    delay (``execute_after`` is ignored); no retry is run (the outcome says ``queued`` and
    ``retry_in``); no concurrency, limits, timeouts, cancellation, ``dedupe_key``
    uniqueness, NOTIFY or pause; handlers run in the enqueueing thread, nested when a
    handler enqueues. Use the ``pgqueue`` fixture and ``drain()`` for all of that.
    """
    sync, aio = split(manager)
    queries = EagerQueries(
        manager, check_entrypoints=sync.check_entrypoints, raise_errors=raise_errors
    )
    saved = sync.queries
    sync.queries = queries
    if aio is not None:
        async_saved, aio.queries = aio.queries, AsyncEagerQueries(queries)
    try:
        yield EagerQueue(queries)
    finally:
        sync.queries = saved
        if aio is not None:
            aio.queries = async_saved
