"""pgqueue-sync: a sync-first PostgreSQL job queue. Plain ``def`` handlers, threads, psycopg 3."""

from ._version import __version__
from .clock import Clock, ManualClock, SystemClock
from .db import Driver, PsycopgDriver
from .errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    DatabaseError,
    DuplicateJobError,
    InvalidEntrypointError,
    InvalidPayloadError,
    JobLostError,
    JobNotFoundError,
    PayloadTooLargeError,
    PgQueueError,
    SchemaNotInstalledError,
    SchemaVersionError,
    UnknownEntrypointError,
    WaitTimeoutError,
)
from .execution import current_context
from .models import (
    CancelResult,
    Context,
    Job,
    JobCancelled,
    JobId,
    JobResult,
    JobStatus,
    LogEntry,
    QueueStatistic,
)
from .qm import QueueManager
from .queries import Queries
from .retry import RetryPolicy, RetryRequested
from .settings import Settings

__all__ = [
    "CancelResult",
    "Clock",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "Context",
    "DatabaseError",
    "Driver",
    "DuplicateJobError",
    "InvalidEntrypointError",
    "InvalidPayloadError",
    "Job",
    "JobCancelled",
    "JobId",
    "JobLostError",
    "JobNotFoundError",
    "JobResult",
    "JobStatus",
    "LogEntry",
    "ManualClock",
    "PayloadTooLargeError",
    "PgQueueError",
    "PsycopgDriver",
    "Queries",
    "QueueManager",
    "QueueStatistic",
    "RetryPolicy",
    "RetryRequested",
    "SchemaNotInstalledError",
    "SchemaVersionError",
    "Settings",
    "SystemClock",
    "UnknownEntrypointError",
    "WaitTimeoutError",
    "__version__",
    "current_context",
]
