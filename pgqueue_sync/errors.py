"""Exceptions raised by pgqueue-sync.

Every error the library raises on purpose derives from ``PgQueueError``, with the
builtin a caller would expect as a second base where there is one (a ConfigurationError is a
ValueError). psycopg errors are translated in ``pgqueue_sync.translate``, in one place,
so that messages say what to do and never carry a password.
"""

from __future__ import annotations

__all__ = [
    "AlreadyRunningError",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "DatabaseError",
    "DuplicateJobError",
    "HandlerAbandoned",
    "InvalidEntrypointError",
    "InvalidHandlerError",
    "InvalidPayloadError",
    "InvalidStateError",
    "InvalidTaskArgumentsError",
    "JobLostError",
    "JobNotFoundError",
    "JobTimeoutError",
    "MissingDependencyError",
    "NoContextError",
    "PayloadTooLargeError",
    "PgQueueError",
    "ScheduleNotFoundError",
    "SchemaNotInstalledError",
    "SchemaVersionError",
    "TransactionPoolingError",
    "UnknownEntrypointError",
    "UnstorableResultError",
    "WaitTimeoutError",
]


class PgQueueError(Exception):
    """Root of every exception raised by pgqueue-sync."""


class ConfigurationError(PgQueueError, ValueError):
    """A setting or argument is invalid (schema name, prefix, batch size, ...)."""


class InvalidEntrypointError(ConfigurationError):
    """An entrypoint name is empty, too long, or has characters outside the allowed set."""


class MissingDependencyError(ConfigurationError, ImportError):
    """A feature needs an optional dependency that is not installed (the message says which
    extra to install, e.g. ``pip install 'pgqueue-sync[cron]'``)."""


class ScheduleNotFoundError(PgQueueError, LookupError):
    """No schedule of that name is in the database."""


class InvalidHandlerError(ConfigurationError, TypeError):
    """A handler cannot be registered: not callable, ``async def`` on the sync manager, or
    unable to take a job (it must accept ``handler(job)`` or ``handler(job, ctx)``)."""


class InvalidStateError(PgQueueError, RuntimeError):
    """A call that the manager's state does not allow (``alive = True`` while ``run()`` is
    stopping, an async handler called outside ``AsyncQueueManager.run()``)."""


class AlreadyRunningError(InvalidStateError):
    """``run()`` was called while it is already running on the same manager."""


class NoContextError(PgQueueError, LookupError):
    """``current_context()`` was called outside a job handler."""


class UnknownEntrypointError(PgQueueError, LookupError):
    """A job was enqueued for an entrypoint that has no registered handler."""


class InvalidPayloadError(PgQueueError, TypeError):
    """A payload is not ``bytes``/``bytearray``/``memoryview``/``None``."""


class InvalidTaskArgumentsError(InvalidPayloadError):
    """A task's arguments were refused at enqueue: they do not match the task's signature,
    JSON cannot carry one of them (bytes, NaN, a datetime, an object, ...), or a keyword
    names an enqueue option the task also takes as a parameter. Nothing was written."""


class PayloadTooLargeError(PgQueueError, ValueError):
    """A payload is larger than ``Settings.max_payload_bytes``."""


class DuplicateJobError(PgQueueError):
    """A job with the same ``dedupe_key`` is already queued or running."""

    def __init__(self, message: str, dedupe_keys: list[str]) -> None:
        super().__init__(message)
        self.dedupe_keys = dedupe_keys


class JobTimeoutError(PgQueueError, TimeoutError):
    """A handler ran longer than its entrypoint's ``timeout``."""


class UnstorableResultError(PgQueueError, ValueError):
    """A handler returned a value that cannot be kept as the job's result: not bytes and
    not strict JSON (NaN, Infinity, an object JSON cannot encode), text PostgreSQL refuses
    (NUL, a lone surrogate), or larger than ``max_payload_bytes``. The job ends ``exception``
    (the handler ran: it is not retried)."""


class JobLostError(PgQueueError):
    """A job's worker was lost (killed, crashed) while running it more than its
    entrypoint's ``max_lost`` times: it is failed instead of run again."""


class HandlerAbandoned(PgQueueError):
    """An async handler still running past ``shutdown_timeout`` was cancelled; its job had
    already gone back to the queue."""


class JobNotFoundError(PgQueueError, LookupError):
    """A job id is neither in the queue nor in the log."""


class WaitTimeoutError(PgQueueError, TimeoutError):
    """``wait_for`` ran out of time; ``finished`` holds the jobs that did finish."""

    def __init__(self, message: str, finished: dict[int, object]) -> None:
        super().__init__(message)
        self.finished = finished


class DatabaseError(PgQueueError):
    """PostgreSQL refused or failed an operation; the psycopg error is the ``__cause__``."""


class ConnectError(DatabaseError):
    """No connection could be opened (bad DSN, wrong password, server down)."""


class SchemaNotInstalledError(DatabaseError):
    """The queue tables do not exist in the configured schema."""


class SchemaVersionError(DatabaseError):
    """The installed schema is older or newer than this version of the library."""


class TransactionPoolingError(DatabaseError):
    """A prepared statement vanished between two transactions of one connection: the
    connection goes through a pooler in transaction mode (PgBouncer) that the driver was not
    told about."""


class ConnectionLostError(DatabaseError):
    """The connection failed during an operation; its outcome may be unknown. Retry."""
