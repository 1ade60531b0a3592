"""pgqueue-sync: a sync-first PostgreSQL job queue. Plain ``def`` handlers, threads, psycopg 3."""

import logging

from ._version import __version__
from .clock import Clock, ManualClock, SystemClock
from .context import Context, JobCancelled, current_context
from .db import Driver, PsycopgDriver
from .errors import (
    AlreadyRunningError,
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    DatabaseError,
    DuplicateJobError,
    HandlerAbandoned,
    InvalidEntrypointError,
    InvalidHandlerError,
    InvalidPayloadError,
    InvalidStateError,
    JobLostError,
    JobNotFoundError,
    JobTimeoutError,
    MissingDependencyError,
    NoContextError,
    PayloadTooLargeError,
    PgQueueError,
    ScheduleNotFoundError,
    SchemaNotInstalledError,
    SchemaVersionError,
    TransactionPoolingError,
    UnknownEntrypointError,
    UnstorableResultError,
    WaitTimeoutError,
)
from .models import (
    CancelResult,
    Job,
    JobId,
    JobResult,
    JobStatus,
    LogEntry,
    QueueStatistic,
    ScheduleInfo,
    WorkerStats,
)
from .qm import QueueManager
from .queries import Queries
from .retry import RetryPolicy, RetryRequested
from .settings import Settings

# The library logs under "pgqueue_sync.*" and stays silent unless the application configures
# logging (without this, Python's last-resort handler would print its warnings to stderr).
logging.getLogger(__name__).addHandler(logging.NullHandler())

__all__ = [
    "AlreadyRunningError",
    "CancelResult",
    "Clock",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "Context",
    "DatabaseError",
    "Driver",
    "DuplicateJobError",
    "HandlerAbandoned",
    "InvalidEntrypointError",
    "InvalidHandlerError",
    "InvalidPayloadError",
    "InvalidStateError",
    "Job",
    "JobCancelled",
    "JobId",
    "JobLostError",
    "JobNotFoundError",
    "JobResult",
    "JobStatus",
    "JobTimeoutError",
    "LogEntry",
    "ManualClock",
    "MissingDependencyError",
    "NoContextError",
    "PayloadTooLargeError",
    "PgQueueError",
    "PsycopgDriver",
    "Queries",
    "QueueManager",
    "QueueStatistic",
    "RetryPolicy",
    "RetryRequested",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "SchemaNotInstalledError",
    "SchemaVersionError",
    "Settings",
    "SystemClock",
    "TransactionPoolingError",
    "UnknownEntrypointError",
    "UnstorableResultError",
    "WaitTimeoutError",
    "WorkerStats",
    "__version__",
    "current_context",
]
