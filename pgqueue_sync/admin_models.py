"""What the operator's API returns: typed, frozen rows, and their JSON form.

The command line prints them (``--json`` prints :func:`jsonable` of them); a dashboard or a
metrics collector reads the same rows from :class:`~pgqueue_sync.admin.AdminQueries`.
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

    ``queued`` jobs are due now, ``deferred`` ones later; ``picked`` are held by workers
    (buffered or running); ``failed`` ran out of attempts and wait for a requeue. The
    ``*_last_minute`` counts come from the log (outcomes written) and the queue (arrivals);
    ``oldest_waiting_seconds`` is how long the oldest due job has waited;
    ``pickup_latency_seconds`` the mean time from due to handler start of the jobs finished
    in the last minute.
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
    """A worker in the registry (``Queries.workers``). ``lost``: no heartbeat for longer
    than its ``retry_timer`` (the time after which its jobs are re-picked); its row is
    forgotten an hour later. A worker that stops cleanly removes its row."""

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
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        values["entrypoints"] = tuple(values["entrypoints"] or ())
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class JobSummary:
    """One row of a job listing: a job in the queue table, or an outcome in the log.

    ``updated_at`` is the job's last change (in the queue) or when its outcome was written
    (in the log); ``error`` the last line of its traceback; ``duration`` (seconds) only for
    outcomes. ``cursor`` orders the listing (``Queries.list_jobs(cursor=...)``).
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
        values = {f.name: row[f.name] for f in dataclasses.fields(cls)}
        values["status"] = JobStatus(values["status"])
        values["error"] = last_line(values["error"])
        return cls(**values)


@dataclasses.dataclass(frozen=True)
class JobPage:
    """A page of a listing; ``next_cursor`` fetches the next one (None: this was the last)."""

    jobs: list[JobSummary]
    next_cursor: int | None


@dataclasses.dataclass(frozen=True)
class JobDetail:
    """Everything about one job (``Queries.job_detail``): the job if it is still in the
    queue table (queued, picked or failed), and every outcome logged for it, oldest first."""

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
    """What ``Queries.requeue_failed`` did: the failed jobs put back in the queue, and the
    ids it did not requeue: ``live`` (queued or running: nothing to do), ``finished`` (in
    the log only: a finished job cannot be requeued, enqueue it again) and ``unknown``."""

    requeued: list[JobId]
    live: list[JobId] = dataclasses.field(default_factory=list)
    finished: list[JobId] = dataclasses.field(default_factory=list)
    unknown: list[JobId] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class PausedEntrypoint:
    """A paused entrypoint (``Queries.paused``): since when, and why if it was said."""

    entrypoint: str
    since: datetime
    reason: str | None


@dataclasses.dataclass(frozen=True)
class MinuteRates:
    """One minute of the queue's traffic (``Queries.rates``): jobs enqueued in it, outcomes
    written in it (``failed``: those that were exceptions or failures), and the mean pick-up
    latency (seconds from due to handler start) of those outcomes, None without any."""

    minute: datetime
    enqueued: int
    done: int
    failed: int
    pickup_latency_seconds: float | None

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> MinuteRates:
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
