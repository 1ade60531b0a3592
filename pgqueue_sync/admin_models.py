"""What the operator's API returns: typed, frozen rows, and their JSON form.

The command line prints them (``--json`` prints ``jsonable`` of them); a dashboard or a
metrics collector reads the same rows from ``qm.queries`` (``pgqueue_sync.admin``).
"""

from __future__ import annotations

import base64
import dataclasses
import enum
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from .models import Job, JobId, JobStatus, LogEntry

__all__ = [
    "EntrypointBacklog",
    "EntrypointStatus",
    "JobDetail",
    "JobPage",
    "JobSummary",
    "MinuteRates",
    "PausedEntrypoint",
    "QueueMetrics",
    "RequeueResult",
    "WorkerInfo",
    "jsonable",
    "last_line",
]


def last_line(text: str | None) -> str | None:
    """The last non-blank line of a traceback (the exception and its message)."""
    if not text:
        return None
    for line in reversed(text.splitlines()):
        if line.strip():
            return line.strip()
    return None


@dataclasses.dataclass(frozen=True)
class EntrypointStatus:
    """One entrypoint's state (``Queries.status``).

    The ``*_last_minute`` counts come from the log (outcomes written) and the queue
    (arrivals).

    Attributes:
        entrypoint: the entrypoint.
        queued: jobs due now.
        deferred: jobs due later (``execute_after``, or waiting for a retry).
        picked: jobs held by workers, buffered or running.
        failed: jobs that ran out of attempts and wait for a requeue.
        done_last_minute: outcomes written in the last minute.
        failed_last_minute: of those, the ``exception`` and ``failed`` ones.
        enqueued_last_minute: jobs enqueued in the last minute.
        oldest_waiting_seconds: how long the oldest due job has waited; None if none is.
        pickup_latency_seconds: the mean time from due to handler start of the jobs
            finished in the last minute; None without any.
        paused: whether workers skip its jobs (``Queries.pause``).
        paused_since: when it was paused, or None.
    """

    entrypoint: str
    queued: int
    deferred: int
    picked: int
    failed: int
    done_last_minute: int
    failed_last_minute: int
    enqueued_last_minute: int
    oldest_waiting_seconds: float | None
    pickup_latency_seconds: float | None
    paused: bool
    paused_since: datetime | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> EntrypointStatus:
        """An EntrypointStatus from a row read by column name."""
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


@dataclasses.dataclass(frozen=True)
class QueueMetrics:
    """The queue as a metrics scrape reads it (``Queries.queue_metrics``): per entrypoint,
    live jobs by state (``queued`` due now, ``deferred``, ``picked``, ``failed``) and how
    long the oldest due job has waited; the workers registry's live and lost workers."""

    backlog: tuple[EntrypointBacklog, ...]
    workers_live: int
    workers_lost: int


@dataclasses.dataclass(frozen=True)
class EntrypointBacklog:
    """One entrypoint's live jobs (:class:`QueueMetrics`)."""

    entrypoint: str
    queued: int
    deferred: int
    picked: int
    failed: int
    oldest_waiting_seconds: float | None


@dataclasses.dataclass(frozen=True)
class WorkerInfo:
    """A worker in the registry (``Queries.workers``). A worker that stops cleanly removes
    its row; a lost one's row is forgotten an hour after it was lost.

    Attributes:
        id: the worker's id (its log lines and the log table's ``worker_id`` name it).
        host: the host name it runs on.
        pid: its process id.
        started_at: when its ``run()`` started.
        heartbeat_at: its last heartbeat.
        entrypoints: the entrypoints it runs.
        threads: its handler threads (``run(workers=...)``).
        busy: the handlers running at its last heartbeat.
        jobs_done: the handlers it ran to an end (succeeded or failed).
        jobs_failed: of those, the ones that failed.
        version: the pgqueue-sync version it runs.
        lost: no heartbeat for longer than its ``retry_timer`` (after which its jobs are
            re-picked).
        heartbeat_age_seconds: seconds since its last heartbeat.
        options: the options of its ``run()``, as JSON; None if not recorded.
    """

    id: uuid.UUID
    host: str
    pid: int
    started_at: datetime
    heartbeat_at: datetime
    entrypoints: tuple[str, ...]
    threads: int
    busy: int
    jobs_done: int
    jobs_failed: int
    version: str
    lost: bool
    heartbeat_age_seconds: float
    options: Mapping[str, Any] | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> WorkerInfo:
        """A WorkerInfo from a row read by column name."""
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        values["entrypoints"] = tuple(values["entrypoints"] or ())
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class JobSummary:
    """One row of a job listing (``Queries.list_jobs``): a job in the queue table, or an
    outcome in the log.

    Attributes:
        id: the job's id.
        entrypoint: its entrypoint.
        status: its status in the queue, or the outcome logged.
        priority: its priority.
        attempts: its attempts so far (in the queue) or the attempt logged.
        enqueued_at: when it was enqueued.
        due_at: when it is or was due.
        updated_at: the job's last change (in the queue) or when its outcome was written
            (in the log).
        worker_id: the worker holding or having run it, or None.
        duration: seconds the handler ran, for outcomes only.
        error: the last line of its traceback (the exception and its message), or None.
        dedupe_key: its unique key, or None.
        cursor: orders the listing; pass ``JobPage.next_cursor`` for the next page.
    """

    id: JobId
    entrypoint: str
    status: JobStatus
    priority: int
    attempts: int
    enqueued_at: datetime | None
    due_at: datetime | None
    updated_at: datetime
    worker_id: uuid.UUID | None
    duration: float | None
    error: str | None
    dedupe_key: str | None
    cursor: int

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> JobSummary:
        """A JobSummary from a row read by column name."""
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        values["status"] = JobStatus(values["status"])
        values["error"] = last_line(values["error"])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class JobPage:
    """A page of a listing (``Queries.list_jobs``).

    Attributes:
        jobs: the page's jobs, newest first.
        next_cursor: pass it as ``cursor`` for the next page; None: this was the last.
    """

    jobs: list[JobSummary]
    next_cursor: int | None


@dataclasses.dataclass(frozen=True)
class JobDetail:
    """Everything about one job (``Queries.job_detail``).

    Attributes:
        id: the job's id.
        job: the job, if it is still in the queue table (queued, picked or failed).
        log: every outcome logged for it, oldest first.
    """

    id: JobId
    job: Job | None
    log: list[LogEntry]

    @property
    def status(self) -> JobStatus:
        """The job's status in the queue, else its last outcome."""
        if self.job is not None:
            return self.job.status
        return self.log[-1].status

    @property
    def entrypoint(self) -> str:
        """The job's entrypoint."""
        return self.job.entrypoint if self.job is not None else self.log[-1].entrypoint

    @property
    def traceback(self) -> str | None:
        """The last traceback recorded: of the last failed attempt, or of the last outcome."""
        if self.job is not None and self.job.last_error:
            return self.job.last_error
        for entry in reversed(self.log):
            if entry.traceback:
                return entry.traceback
        return None


@dataclasses.dataclass(frozen=True)
class RequeueResult:
    """What ``Queries.requeue_failed`` did.

    Attributes:
        requeued: the failed jobs put back in the queue.
        live: ids queued or running: nothing to do.
        finished: ids in the log only: a finished job cannot be requeued (enqueue it again).
        unknown: ids neither in the queue nor in the log.
    """

    requeued: list[JobId]
    live: list[JobId] = dataclasses.field(default_factory=list)
    finished: list[JobId] = dataclasses.field(default_factory=list)
    unknown: list[JobId] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class PausedEntrypoint:
    """A paused entrypoint (``Queries.paused``).

    Attributes:
        entrypoint: the entrypoint.
        since: when it was paused.
        reason: why, if ``pause`` was told; else None.
    """

    entrypoint: str
    since: datetime
    reason: str | None


@dataclasses.dataclass(frozen=True)
class MinuteRates:
    """One minute of the queue's traffic (``Queries.rates``).

    Attributes:
        minute: the minute's start.
        enqueued: jobs enqueued in it.
        done: outcomes written in it.
        failed: of those, the exceptions and failures.
        pickup_latency_seconds: the mean time from due to handler start of those
            outcomes, in seconds; None without any.
    """

    minute: datetime
    enqueued: int
    done: int
    failed: int
    pickup_latency_seconds: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MinuteRates:
        """A MinuteRates from a row read by column name."""
        return cls(**{f.name: row[f.name] for f in dataclasses.fields(cls)})


_SCALARS: tuple[tuple[type | tuple[type, ...], Callable[[Any], Any]], ...] = (
    ((datetime, date), lambda v: v.isoformat()),
    (timedelta, lambda v: v.total_seconds()),
    (uuid.UUID, str),
    ((bytes, bytearray, memoryview), lambda v: base64.b64encode(bytes(v)).decode("ascii")),
)


def jsonable(value: Any) -> Any:
    """``value`` as plain JSON types: dataclasses become objects (properties of JobDetail
    included), times ISO 8601 strings, durations seconds, ids strings, bytes base64."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out = {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
        if isinstance(value, JobDetail):
            out.update(
                status=jsonable(value.status),
                entrypoint=value.entrypoint,
                traceback=value.traceback,
            )
        return out
    if isinstance(value, enum.Enum):
        value = value.value
    for kinds, convert in _SCALARS:
        if isinstance(value, kinds):
            return convert(value)
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (Sequence, set, frozenset)) and not isinstance(value, str):
        return [jsonable(v) for v in value]
    return value
