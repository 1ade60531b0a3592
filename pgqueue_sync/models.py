"""Rows and values: Job, JobStatus, LogEntry, QueueStatistic and the handler Context."""

from __future__ import annotations

import dataclasses
import enum
import threading
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

__all__ = ["Context", "Job", "JobCancelled", "JobId", "JobStatus", "LogEntry", "QueueStatistic"]

JobId = int


class JobStatus(str, enum.Enum):
    """A job's status; the values are those of the PostgreSQL enum type."""

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


# Columns of the jobs table, in the order Job.from_row expects them.
JOB_COLUMNS = (
    "id",
    "priority",
    "created",
    "updated",
    "heartbeat",
    "execute_after",
    "status",
    "entrypoint",
    "payload",
    "attempts",
    "worker_id",
    "dedupe_key",
    "headers",
)


@dataclasses.dataclass(frozen=True)
class Job:
    """One job, as claimed from the queue table."""

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
        )


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """One recorded outcome of a job (a row of the log table)."""

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
    enqueued: datetime | None
    created: datetime

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
            enqueued=row["enqueued"],
            created=row["created"],
        )


@dataclasses.dataclass(frozen=True)
class QueueStatistic:
    """How many jobs of one entrypoint are in one status (see ``Queries.queue_size``)."""

    entrypoint: str
    status: JobStatus
    count: int


@dataclasses.dataclass
class Context:
    """What a running handler can know about its job beyond the Job itself.

    ``cancelled`` is set when the job is cancelled while it runs (threads cannot be killed,
    so a long handler should look at it, or call :meth:`check`, between steps).
    """

    job: Job
    worker_id: uuid.UUID
    cancelled: threading.Event = dataclasses.field(default_factory=threading.Event)

    def check(self) -> None:
        """Raise :class:`JobCancelled` if the job was cancelled."""
        if self.cancelled.is_set():
            raise JobCancelled(f"job {self.job.id} was cancelled")


class JobCancelled(Exception):
    """Raised by :meth:`Context.check` inside a handler whose job was cancelled."""
