"""pgqueue-sync: a sync-first PostgreSQL job queue. Plain ``def`` handlers, threads, psycopg 3.

The library logs to the ``pgqueue_sync`` logger and stays silent unless the application
configures logging: a NullHandler keeps Python's last-resort handler from printing its
warnings (a job that failed, a lost connection) to stderr.
"""

import logging

from ._version import __version__
from .admin_models import (
    EntrypointStatus,
    JobDetail,
    JobPage,
    JobSummary,
    MinuteRates,
    PausedEntrypoint,
    RequeueResult,
    WorkerInfo,
)
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
    InvalidTaskArgumentsError,
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
from .tasks import Task

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
    "EntrypointStatus",
    "HandlerAbandoned",
    "InvalidEntrypointError",
    "InvalidHandlerError",
    "InvalidPayloadError",
    "InvalidStateError",
    "InvalidTaskArgumentsError",
    "Job",
    "JobCancelled",
    "JobDetail",
    "JobId",
    "JobLostError",
    "JobNotFoundError",
    "JobPage",
    "JobResult",
    "JobStatus",
    "JobSummary",
    "JobTimeoutError",
    "LogEntry",
    "ManualClock",
    "MinuteRates",
    "MissingDependencyError",
    "NoContextError",
    "PausedEntrypoint",
    "PayloadTooLargeError",
    "PgQueueError",
    "PsycopgDriver",
    "Queries",
    "QueueManager",
    "QueueStatistic",
    "RequeueResult",
    "RetryPolicy",
    "RetryRequested",
    "ScheduleInfo",
    "ScheduleNotFoundError",
    "SchemaNotInstalledError",
    "SchemaVersionError",
    "Settings",
    "SystemClock",
    "Task",
    "TransactionPoolingError",
    "UnknownEntrypointError",
    "UnstorableResultError",
    "WaitTimeoutError",
    "WorkerInfo",
    "WorkerStats",
    "__version__",
    "current_context",
]
