"""Rows and values: Job, JobStatus, LogEntry, JobResult, QueueStatistic, CancelResult,
ScheduleInfo, and the values the engine passes between its stages (Outcome, Completed, LimitedClaim,
WorkerStats). Pure data: nothing here touches the database."""

from __future__ import annotations

import dataclasses
import enum
import inspect
import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .cron import CatchUp

__all__ = [
    "ENQUEUE_COLUMNS",
    "JOB_COLUMN_TYPES",
    "CancelResult",
    "Completed",
    "Job",
    "JobId",
    "JobResult",
    "JobStatus",
    "LimitedClaim",
    "LogEntry",
    "Outcome",
    "QueueStatistic",
    "ScheduleInfo",
    "WorkerStats",
]

JobId = int
"""A job's id: a PostgreSQL ``bigint``, as ``enqueue`` returns it."""


class JobStatus(str, enum.Enum):
    """A job's status; the values are those of the PostgreSQL enum type.

    ``queued`` and ``picked`` are live; the others are outcomes. ``failed`` jobs (retries
    exhausted) also stay in the queue table until requeued or cancelled. A member compares
    equal to its value (``JobStatus.FAILED == "failed"``) and prints as it.

    Attributes:
        QUEUED: waiting in the queue (due now, or deferred by ``execute_after``).
        PICKED: claimed by a worker, buffered or running.
        SUCCESSFUL: the handler returned.
        EXCEPTION: the handler raised (or called ``sys.exit()``), with no retry left to try.
        CANCELED: cancelled before it ran, or stopped on request while running.
        FAILED: the retry policy gave up, or the job was lost with its worker more than
            ``max_lost`` times; kept in the queue table for inspection and ``requeue``.
    """

    QUEUED = "queued"
    PICKED = "picked"
    SUCCESSFUL = "successful"
    EXCEPTION = "exception"
    CANCELED = "canceled"
    FAILED = "failed"

    @property
    def terminal(self) -> bool:
        """True for an outcome, False for ``queued`` and ``picked``."""
        return self not in (JobStatus.QUEUED, JobStatus.PICKED)

    def __str__(self) -> str:
        return self.value


@dataclasses.dataclass(frozen=True)
class Job:
    """One job, as claimed from (or read in) the queue table: what a handler receives.

    Attributes:
        id: the job's id, as ``enqueue`` returned it.
        priority: higher runs first; among equal priorities, the oldest first.
        created: when the job was enqueued (an aware datetime, as are all of them; a
            handler's job has them in UTC, unless its worker goes through a transaction
            pooler, where they are in the server's TimeZone).
        updated: when its row last changed (claimed, retried, requeued).
        heartbeat: when its worker last said it still holds it; a ``picked`` job whose
            heartbeat is older than ``retry_timer`` is claimed again.
        execute_after: when it is (or was) due; ``created`` unless it was deferred or is
            waiting for a retry.
        status: ``queued`` or ``picked`` while live; ``failed`` once its retries ran out.
        entrypoint: the name of the handler that runs it.
        payload: the bytes given to ``enqueue`` (a task's: its arguments as JSON), or None.
        attempts: how many times it was claimed, this attempt included.
        worker_id: the worker that holds it, None while queued.
        dedupe_key: the unique key given to ``enqueue``, or None.
        headers: the JSON object given to ``enqueue`` (trace context, tenant, ...), or None.
        last_error: the traceback of the last failed attempt, for a job being retried or
            ``failed``; None otherwise.
        cancel_requested: ``cancel`` was asked while it was running; a handler that checks
            its [`Context`][pgqueue_sync.Context] sees it.
        lost: how many of its rescues found its handler running when the worker died;
            past the entrypoint's ``max_lost`` the job fails instead of running again.
        rescued: how many claims took it from a worker presumed dead.
        started: when the handler of the current attempt started, recorded only for
            rescued jobs; None otherwise.
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
        """A Job from a claim's columns (JOB_COLUMN_TYPES order: the fields' order).

        Claims build thousands of these a second: the fields are filled in one step, as the
        frozen dataclass's ``__init__`` would one ``object.__setattr__`` at a time.
        """
        values = list(row)
        values[_STATUS] = _STATUSES[values[_STATUS]]
        payload = values[_PAYLOAD]
        if payload is not None and type(payload) is not bytes:
            values[_PAYLOAD] = bytes(payload)
        values[_CANCEL_REQUESTED] = bool(values[_CANCEL_REQUESTED])
        job = object.__new__(cls)
        job.__dict__.update(zip(_JOB_FIELDS, values, strict=True))
        return job

    @classmethod
    def from_claim(cls, row: Sequence[Any], worker_id: uuid.UUID, claimed_at: datetime) -> Job:
        """A Job from a claim's columns (CLAIM_COLUMNS order): the columns the claim has
        just set to known values (status, heartbeat, worker, started) are not read back,
        ``updated`` is the claim's time ``claimed_at`` (read from one row of the claim), and
        an ``execute_after`` read as NULL is ``created`` (the claim returns it so).

        The hottest constructor (every claimed job): its fields written out as one dict,
        which costs two thirds of filling them in from the column names.
        """
        (
            job_id,
            priority,
            created,
            _,
            execute_after,
            entrypoint,
            payload,
            attempts,
            dedupe_key,
            headers,
            last_error,
            cancel_requested,
            lost,
            rescued,
        ) = row
        if payload is not None and type(payload) is not bytes:
            payload = bytes(payload)
        updated = claimed_at
        job = object.__new__(cls)
        object.__setattr__(
            job,
            "__dict__",
            {
                "id": job_id,
                "priority": priority,
                "created": created,
                "updated": updated,
                "heartbeat": updated,  # both set to the claim's now()
                "execute_after": created if execute_after is None else execute_after,
                "status": JobStatus.PICKED,
                "entrypoint": entrypoint,
                "payload": payload,
                "attempts": attempts,
                "worker_id": worker_id,
                "dedupe_key": dedupe_key,
                "headers": headers,
                "last_error": last_error,
                "cancel_requested": cancel_requested,
                "lost": lost,
                "rescued": rescued,
                "started": None,
            },
        )
        return job

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Job:
        """A Job from a row read by name (every column of JOB_COLUMN_TYPES)."""
        return cls.from_tuple([row[name] for name in _JOB_FIELDS])


_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(Job))
_STATUS = _JOB_FIELDS.index("status")
_PAYLOAD = _JOB_FIELDS.index("payload")
_CANCEL_REQUESTED = _JOB_FIELDS.index("cancel_requested")
_STATUSES = {status.value: status for status in JobStatus}

# The jobs table's columns, declared once, as Job reads them: in Job's field order, each
# with the type a claim reads it as (the status enum as text, which reads the same in text
# and binary results). The claim's select list and Job.from_tuple follow this order;
# enqueue's COPY sends ENQUEUE_COLUMNS with these types.
JOB_COLUMN_TYPES: dict[str, str] = {
    "id": "int8",
    "priority": "int4",
    "created": "timestamptz",
    "updated": "timestamptz",
    "heartbeat": "timestamptz",
    "execute_after": "timestamptz",
    "status": "text",
    "entrypoint": "text",
    "payload": "bytea",
    "attempts": "int4",
    "worker_id": "uuid",
    "dedupe_key": "text",
    "headers": "jsonb",
    "last_error": "text",
    "cancel_requested": "bool",
    "lost": "int4",
    "rescued": "int4",
    "started": "timestamptz",
}
# What a claim reads back: the others it has just set to known values (Job.from_claim).
CLAIM_COLUMNS = tuple(
    name for name in JOB_COLUMN_TYPES if name not in ("status", "heartbeat", "worker_id", "started")
)
# What enqueue writes with COPY, in this order (the rest takes the table's defaults).
ENQUEUE_COLUMNS = (
    "id",
    "priority",
    "entrypoint",
    "payload",
    "execute_after",
    "dedupe_key",
    "headers",
)


@dataclasses.dataclass(frozen=True)
class LogEntry:
    """One recorded outcome of a job (a row of the log table), as ``history`` returns it.

    Attributes:
        id: the log row's id (one job has one row per recorded outcome).
        job_id: the job's id.
        entrypoint: the job's entrypoint.
        status: the outcome: ``successful``, ``exception``, ``canceled`` or ``failed``.
        priority: the job's priority.
        attempts: the attempt this outcome ended (1 for the first).
        worker_id: the worker that ran it; None for a job cancelled while queued.
        duration: how long the handler ran; None when it did not run.
        traceback: the exception's traceback for ``exception`` and ``failed``; else None.
        result: the handler's return value when it returned ``bytes``; else None.
        value: the handler's return value when it returned anything else (decoded
            JSON: a task's return value); None otherwise.
        headers: the job's headers, or None.
        enqueued: when the job was enqueued; None if that was not recorded.
        created: when the outcome was written; the handler started ``duration`` before.
        due: when the attempt became due (its ``execute_after``); ``created - due`` minus
            ``duration`` is the pick-up latency. None in rows written before schema
            version 3.
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
        """A LogEntry from a row of the log table read by column name."""
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
    """A finished job, as [`Queries.wait_for`][pgqueue_sync.Queries.wait_for] returns it.

    Attributes:
        job_id: the job's id.
        status: how it ended: ``successful``, ``exception``, ``canceled`` or ``failed``.
        result: the handler's return value when it returned ``bytes``; else None.
        value: the handler's return value when it returned anything else, decoded from
            JSON (a task's return value: ``wait_for(ids)[0].value``); else None.
        traceback: the exception's traceback when the job raised or failed; else None.
        finished: when its outcome was written.
    """

    job_id: JobId
    status: JobStatus
    result: bytes | None
    value: Any
    traceback: str | None
    finished: datetime

    @classmethod
    def from_entry(cls, entry: LogEntry) -> JobResult:
        """The JobResult of a log row."""
        return cls(
            entry.job_id, entry.status, entry.result, entry.value, entry.traceback, entry.created
        )


@dataclasses.dataclass(frozen=True)
class CancelResult:
    """What [`Queries.cancel`][pgqueue_sync.Queries.cancel] did.

    Attributes:
        canceled: jobs that were queued (or failed): cancelled at once, logged ``canceled``.
        requested: running jobs asked to stop (``cancel_requested``); a handler that
            checks its context stops, and the job is logged ``canceled``.
        finished: ids already finished: nothing to cancel.
        unknown: ids neither in the queue nor in the log.
    """

    canceled: list[JobId]
    requested: list[JobId]
    finished: list[JobId] = dataclasses.field(default_factory=list)
    unknown: list[JobId] = dataclasses.field(default_factory=list)


@dataclasses.dataclass(frozen=True)
class QueueStatistic:
    """How many jobs of one entrypoint are in one status (see ``Queries.queue_size``).

    Attributes:
        entrypoint: the entrypoint.
        status: ``queued``, ``picked`` or ``failed``.
        count: how many of its jobs are in that status.
    """

    entrypoint: str
    status: JobStatus
    count: int


@dataclasses.dataclass(frozen=True)
class ScheduleInfo:
    """A schedule of a periodic job as stored in the database (``Queries.schedules()``).

    Attributes:
        name: the schedule's name, that of its entrypoint.
        expression: its cron expression.
        timezone: the IANA time zone the expression is read in.
        catch_up: what happens to ticks missed while no worker ran: ``"latest"``,
            ``"none"`` or ``"all"``.
        catch_up_limit: with ``"all"``, how many missed ticks are enqueued at most.
        priority: the priority of every job it enqueues.
        payload: the payload of every job it enqueues.
        paused: paused schedules enqueue nothing until resumed.
        next_tick: the next tick to handle.
        last_tick: the last tick enqueued, or None.
        last_job_id: the last job enqueued (a tick's, or a manual run's), or None.
        last_status: that job's status, None once its log row is pruned.
        declared: when a worker last declared it with a changed definition.
        seen: when a running worker last declared it.
        created: when it was first declared.
        orphaned: no running worker has declared it for a while
            (``schedule_queries.ORPHANED_AFTER``).
    """

    name: str
    expression: str
    timezone: str
    catch_up: CatchUp
    catch_up_limit: int
    priority: int
    payload: bytes | None
    paused: bool
    next_tick: datetime
    last_tick: datetime | None
    last_job_id: JobId | None
    last_status: JobStatus | None
    declared: datetime
    seen: datetime
    created: datetime
    orphaned: bool

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> ScheduleInfo:
        """A ScheduleInfo from a row of the schedules table read by column name."""
        payload = row["payload"]
        status = row["last_status"]
        return cls(
            name=row["name"],
            expression=row["expression"],
            timezone=row["timezone"],
            catch_up=row["catch_up"],
            catch_up_limit=row["catch_up_limit"],
            priority=row["priority"],
            payload=None if payload is None else bytes(payload),
            paused=row["paused"],
            next_tick=row["next_tick"],
            last_tick=row["last_tick"],
            last_job_id=row["last_job_id"],
            last_status=None if status is None else JobStatus(status),
            declared=row["declared"],
            seen=row["seen"],
            created=row["created"],
            orphaned=bool(row["orphaned"]),
        )


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

    # Written by hand (dataclass keeps an __init__ the class defines): the generated one of
    # a frozen dataclass sets each field with object.__setattr__, 2.5 us per outcome; this
    # one 0.7 us. Its parameters must stay the fields, in order (checked below).
    def __init__(
        self,
        job_id: JobId,
        attempt: int,
        status: JobStatus,
        duration: float,
        traceback: str | None = None,
        result: bytes | None = None,
        value_json: str | None = None,
        delay: float = 0.0,
    ) -> None:
        self.__dict__.update(
            job_id=job_id,
            attempt=attempt,
            status=status,
            duration=duration,
            traceback=traceback,
            result=result,
            value_json=value_json,
            delay=delay,
        )


if tuple(inspect.signature(Outcome.__init__).parameters)[1:] != tuple(
    f.name for f in dataclasses.fields(Outcome)
):  # pragma: no cover - a field added without its parameter
    raise TypeError("Outcome.__init__ must take Outcome's fields, in order")


@dataclasses.dataclass(frozen=True)
class Completed:
    """Outcomes written by one completion: finished (logged) and retried jobs."""

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


@dataclasses.dataclass
class WorkerStats:
    """Counters of one ``run()`` (``qm.stats``, live; ``qm.last_stats`` once it returned).

    Attributes:
        claimed: jobs claimed.
        succeeded: handlers that returned.
        failed: handlers that raised (retried or not).
        recorded: outcomes written.
        fenced: outcomes refused because another worker had claimed the job since (this
            worker was presumed dead).
        released: held jobs given back to the queue before they finished (past
            ``shutdown_timeout``, for instance).
        timed_out: handlers that ran past their entrypoint's ``timeout``.
    """

    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    recorded: int = 0
    fenced: int = 0
    released: int = 0
    timed_out: int = 0
