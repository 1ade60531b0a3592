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
    PayloadTooLargeError,
    PgQueueError,
    SchemaNotInstalledError,
    SchemaVersionError,
    UnknownEntrypointError,
)
from .models import Context, Job, JobCancelled, JobId, JobStatus, LogEntry, QueueStatistic
from .qm import QueueManager
from .queries import Queries
from .settings import Settings
from .worker import current_context

__all__ = [
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
    "JobStatus",
    "LogEntry",
    "ManualClock",
    "PayloadTooLargeError",
    "PgQueueError",
    "PsycopgDriver",
    "Queries",
    "QueueManager",
    "QueueStatistic",
    "SchemaNotInstalledError",
    "SchemaVersionError",
    "Settings",
    "SystemClock",
    "UnknownEntrypointError",
    "__version__",
    "current_context",
]
