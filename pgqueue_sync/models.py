"""Rows and values: Job, JobStatus, LogEntry, JobResult, QueueStatistic, and Context."""

from __future__ import annotations

import contextlib
import dataclasses
import enum
import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

__all__ = [
    "CancelResult",
    "Context",
    "Job",
    "JobCancelled",
    "JobId",
    "JobResult",
    "JobStatus",
    "LogEntry",
    "QueueStatistic",
]

JobId = int

logger = logging.getLogger("pgqueue_sync")


class JobStatus(str, enum.Enum):
    """A job's status; the values are those of the PostgreSQL enum type.

    ``queued`` and ``picked`` are live; the others are outcomes. ``failed`` jobs (retries
    exhausted) also stay in the queue table until requeued or cancelled.
    """

    QUEUED = "queued"
    PICKED = "picked"
    SUCCESSFUL = "successful"
    EXCEPTION = "exception"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        return self not in (JobStatus.QUEUED, JobStatus.PICKED)

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Job:
    """One job, as claimed from (or read in) the queue table.

    ``attempts`` counts claims. ``rescued`` counts the claims that took the job from a
    worker presumed dead (its heartbeat older than ``retry_timer``), and ``lost`` those of
    them whose handler was known to be running when that worker died: past the
    entrypoint's ``max_lost``, the job fails instead of running again. ``started`` is when
    the handler of the current attempt started, recorded only for rescued jobs.
    """

    id: JobId
    priority: int
    created: datetime
    updated: datetime
    heartbeat: datetime
    execute_after: datetime
    status: JobStatus
    entrypoint: str
    payload: bytes | None
    attempts: int
    worker_id: uuid.UUID | None
    dedupe_key: str | None = None
    headers: Mapping[str, Any] | None = None
    last_error: str | None = None
    cancel_requested: bool = False
    lost: int = 0
    rescued: int = 0
    started: datetime | None = None

    @classmethod
    def from_tuple(cls, row: Sequence[Any]) -> Job:
        """A Job from the claim's columns (JOB_COLUMNS order: the fields' order).

        Claims build thousands of these a second: the fields are filled in one step, as the
        frozen dataclass's ``__init__`` would one ``object.__setattr__`` at a time.
        """
        values = list(row)
        values[6] = _STATUSES[values[6]]
        if values[8] is not None and type(values[8]) is not bytes:
            values[8] = bytes(values[8])
        values[14] = bool(values[14])
        job = object.__new__(cls)
        job.__dict__.update(zip(_JOB_FIELDS, values, strict=True))
        return job

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        return cls(
            id=row["id"],
            priority=row["priority"],
            created=row["created"],
            updated=row["updated"],
            heartbeat=row["heartbeat"],
            execute_after=row["execute_after"],
            status=JobStatus(row["status"]),
            entrypoint=row["entrypoint"],
            payload=None if row["payload"] is None else bytes(row["payload"]),
            attempts=row["attempts"],
            worker_id=row["worker_id"],
            dedupe_key=row.get("dedupe_key"),
            headers=row.get("headers"),
            last_error=row.get("last_error"),
            cancel_requested=bool(row.get("cancel_requested", False)),
            lost=row.get("lost", 0),
            rescued=row.get("rescued", 0),
            started=row.get("started"),
        )


_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_STATUSES = {status.value: status for status in JobStatus}


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """One recorded outcome of a job (a row of the log table).

    ``enqueued`` is when the job was enqueued, ``due`` when its attempt became due (its
    ``execute_after``), ``created`` when the outcome was written; the handler started
    ``duration`` before that.
    """

    id: int
    job_id: JobId
    entrypoint: str
    status: JobStatus
    priority: int
    attempts: int
    worker_id: uuid.UUID | None
    duration: timedelta | None
    traceback: str | None
    result: bytes | None
    value: Any
    headers: Mapping[str, Any] | None
    enqueued: datetime | None
    created: datetime
    due: datetime | None = None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> LogEntry:
        return cls(
            id=row["id"],
            job_id=row["job_id"],
            entrypoint=row["entrypoint"],
            status=JobStatus(row["status"]),
            priority=row["priority"],
            attempts=row["attempts"],
            worker_id=row["worker_id"],
            duration=row["duration"],
            traceback=row["traceback"],
            result=None if row["result"] is None else bytes(row["result"]),
            value=row["result_json"],
            headers=row["headers"],
            enqueued=row["enqueued"],
            created=row["created"],
            due=row.get("due"),
        )


@dataclasses.dataclass(frozen=True)
class JobResult:
    """A finished job, as ``Queries.wait_for`` returns it.

    ``result`` holds a ``bytes`` return value; ``value`` any other (JSON) return value.
    """

    job_id: JobId
    status: JobStatus
    result: bytes | None
    value: Any
    traceback: str | None
    finished: datetime

    @classmethod
    def from_entry(cls, entry: LogEntry) -> JobResult:
        return cls(
            entry.job_id, entry.status, entry.result, entry.value, entry.traceback, entry.created
        )


@dataclasses.dataclass(frozen=True)
class CancelResult:
    """What ``Queries.cancel`` did: jobs cancelled at once, and running ones asked to stop;
    and the ids it could not cancel: ``finished`` (already finished: nothing to cancel) and
    ``unknown`` (neither in the queue nor in the log)."""

    canceled: list[JobId]
    requested: list[JobId]
    finished: list[JobId] = dataclasses.field(default_factory=list)
    unknown: list[JobId] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class QueueStatistic:
    """How many jobs of one entrypoint are in one status (see ``Queries.queue_size``)."""

    entrypoint: str
    status: JobStatus
    count: int


class JobCancelled(Exception):
    """Raised by :meth:`Context.check` inside a handler whose job was cancelled."""


@dataclasses.dataclass
class Context:
    """What a running handler can know about its job beyond the Job itself.

    Threads cannot be killed: when the job is cancelled (or runs past its timeout) while it
    runs, ``cancelled`` is set and a long handler should look at it, or call :meth:`check`,
    between steps. A handler gets its Context as a second parameter (``def handler(job,
    ctx)``) or from ``pgqueue_sync.current_context()``.
    """

    job: Job
    worker_id: uuid.UUID
    # A worker makes one Context per claimed job: the Event is only made for a handler that
    # asks for it (a threading.Event costs more to create than the rest of the Context).
    _cancelled: bool = dataclasses.field(default=False, repr=False)
    _event: threading.Event | None = dataclasses.field(default=None, repr=False)
    _callbacks: list[Callable[[], object]] = dataclasses.field(default_factory=list, repr=False)
    _lock: threading.Lock = dataclasses.field(default_factory=threading.Lock, repr=False)

    @property
    def attempt(self) -> int:
        """1 for the first run of the job, 2 for its first retry, and so on."""
        return self.job.attempts

    @property
    def cancelled(self) -> threading.Event:
        """Set once the job is cancelled: ``ctx.cancelled.is_set()``, ``.wait(timeout)``."""
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if self._cancelled:
                    self._event.set()
            return self._event

    @property
    def is_cancelled(self) -> bool:
        """Whether the job was cancelled (``cancelled.is_set()``, without making the Event)."""
        return self._cancelled

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled; the job ends ``canceled``."""
        if self._cancelled:
            raise JobCancelled(f"job {self.job.id} was cancelled")

    def cancel(self) -> None:
        """Mark the job cancelled and run the callbacks registered with :meth:`on_cancel`."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            if self._event is not None:
                self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("cancel callback of job %d failed", self.job.id)

    def on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback`` (from another thread) when the job is cancelled; at once if it
        already is. Returns a function that unregisters it."""
        with self._lock:
            if not self._cancelled:
                self._callbacks.append(callback)

                def remove() -> None:
                    with self._lock, contextlib.suppress(ValueError):
                        self._callbacks.remove(callback)

                return remove
        callback()
        return lambda: None
