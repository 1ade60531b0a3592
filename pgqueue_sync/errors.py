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
    """Root of every exception raised by pgqueue-sync: ``except PgQueueError`` catches them all."""


class ConfigurationError(PgQueueError, ValueError):
    """Raised at once, before anything is written or started, for a setting or argument that
    is invalid: a schema name, a prefix, a ``run()`` option, a duration that is NaN or
    negative, an input to ``enqueue`` PostgreSQL would refuse (naming the job's index)."""


class InvalidEntrypointError(ConfigurationError):
    """Raised by ``entrypoint``, ``task``, ``periodic`` and ``enqueue`` for an entrypoint name
    that is empty, too long, or has characters outside the allowed set."""


class MissingDependencyError(ConfigurationError, ImportError):
    """Raised when a feature needs an optional dependency that is not installed (periodic
    jobs without croniter, ...); the message says which extra to install."""


class ScheduleNotFoundError(PgQueueError, LookupError):
    """Raised by the schedule methods of ``Queries`` (``pause_schedule``, ``run_schedule``,
    ...) for a name no schedule in the database has."""


class InvalidHandlerError(ConfigurationError, TypeError):
    """Raised when a handler is registered (``entrypoint``, ``task``, ``periodic``) that is
    not callable, is ``async def`` on the sync manager, or cannot take a job (it must accept
    ``handler(job)`` or ``handler(job, ctx)``)."""


class InvalidStateError(PgQueueError, RuntimeError):
    """Raised for a call that the manager's state does not allow: ``alive = True`` while
    ``run()`` is stopping, an async handler called outside ``AsyncQueueManager.run()``, a
    query other than ``enqueue`` in eager mode."""


class AlreadyRunningError(InvalidStateError):
    """Raised by ``run()`` called while it is already running on the same manager."""


class NoContextError(PgQueueError, LookupError):
    """Raised by ``current_context()`` called outside a job handler."""


class UnknownEntrypointError(PgQueueError, LookupError):
    """Raised by ``enqueue`` for an entrypoint that has no handler on a manager that has
    some (unless it was built with ``check_entrypoints=False``); nothing is written."""


class InvalidPayloadError(PgQueueError, TypeError):
    """Raised by ``enqueue`` (nothing written) for a payload that is not ``bytes``,
    ``bytearray``, ``memoryview`` or None."""


class InvalidTaskArgumentsError(InvalidPayloadError):
    """Raised by a task's ``enqueue`` when its arguments do not match the task's signature,
    JSON cannot carry one of them (bytes, NaN, a datetime, an object, ...), or a keyword
    names an enqueue option the task also takes as a parameter. Nothing was written."""


class PayloadTooLargeError(PgQueueError, ValueError):
    """Raised by ``enqueue`` (nothing written) for a payload larger than
    ``Settings.max_payload_bytes``."""


class DuplicateJobError(PgQueueError):
    """Raised by ``enqueue`` (with ``on_conflict="raise"``, the default) when a job with the
    same ``dedupe_key`` is already queued or running; nothing is written.

    Attributes:
        dedupe_keys: the keys that were taken.
    """

    def __init__(self, message: str, dedupe_keys: list[str]) -> None:
        super().__init__(message)
        self.dedupe_keys = dedupe_keys


class JobTimeoutError(PgQueueError, TimeoutError):
    """Recorded as the error of a job whose handler ran longer than its entrypoint's
    ``timeout``: the attempt counts as failed (the handler's thread is left to finish)."""


class UnstorableResultError(PgQueueError, ValueError):
    """Recorded as the error of a job whose handler returned a value that cannot be kept as
    the job's result: not bytes and
    not strict JSON (NaN, Infinity, an object JSON cannot encode), text PostgreSQL refuses
    (NUL, a lone surrogate), or larger than ``max_payload_bytes``. The job ends ``exception``
    (the handler ran: it is not retried)."""


class JobLostError(PgQueueError):
    """Recorded as the error of a job whose worker was lost (killed, crashed) while running
    it more than its entrypoint's ``max_lost`` times: it is failed instead of run again."""


class HandlerAbandoned(PgQueueError):
    """Reported as the outcome of an async handler that was still running past
    ``shutdown_timeout`` and was cancelled; its job had already gone back to the queue."""


class JobNotFoundError(PgQueueError, LookupError):
    """Raised by ``wait_for`` and ``job_detail`` for a job id that is neither in the queue nor
    in the log."""


class WaitTimeoutError(PgQueueError, TimeoutError):
    """Raised by ``wait_for`` when its ``timeout`` runs out.

    Attributes:
        finished: the results of the jobs that did finish, by id.
    """

    def __init__(self, message: str, finished: dict[int, object]) -> None:
        super().__init__(message)
        self.finished = finished


class DatabaseError(PgQueueError):
    """Raised when PostgreSQL refused or failed an operation; the psycopg error is the
    ``__cause__``. The base of the errors below."""


class ConnectError(DatabaseError):
    """Raised when no connection could be opened (bad DSN, wrong password, server down); the
    message never shows the password."""


class SchemaNotInstalledError(DatabaseError):
    """Raised by any query, and by ``run()`` at start, when the queue's tables do not exist
    in the configured schema: run ``pgq-sync install``."""


class SchemaVersionError(DatabaseError):
    """Raised by ``run()``, ``verify`` and ``upgrade`` when the installed schema is older (run
    ``pgq-sync upgrade``) or newer (upgrade pgqueue-sync) than this version of the library."""


class TransactionPoolingError(DatabaseError):
    """Raised when a prepared statement vanished between two transactions of one connection:
    the connection goes through a pooler in transaction mode (PgBouncer) that the driver was
    not told about. Use ``PsycopgDriver(..., transaction_pooling=True)``."""


class ConnectionLostError(DatabaseError):
    """Raised when the connection failed during an operation, whose outcome may then be
    unknown. Retry (an ``enqueue`` with a ``dedupe_key`` is safe to retry)."""
