"""Exceptions raised by pgqueue-sync.

Every error the library raises derives from :class:`PgQueueError`. psycopg errors are
translated here, in one place, so that messages say what to do and never carry a password.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

import psycopg
import psycopg.errors

from .redaction import NOT_SHOWN, read_conninfo, redact_conninfo, scrub

__all__ = [
    "AlreadyRunningError",
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "DatabaseError",
    "DuplicateJobError",
    "InvalidEntrypointError",
    "InvalidHandlerError",
    "InvalidPayloadError",
    "InvalidStateError",
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
    "connect_error",
    "parse_conninfo",
    "redact_conninfo",
    "translate_errors",
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


def parse_conninfo(conninfo: str) -> dict[str, str]:
    """The parameters of ``conninfo`` (password included: never show them).

    A string libpq cannot parse is a ConfigurationError that shows nothing of it: libpq's
    message quotes the input, so it is neither repeated nor chained.
    """
    reading = read_conninfo(conninfo)
    if reading.params is None:
        raise ConfigurationError(f"invalid connection string ({NOT_SHOWN}): {reading.problem}")
    return reading.params


# psycopg names its automatic prepared statements _pg3_0, _pg3_1, ...
_AUTOMATIC_STATEMENT = re.compile(r'prepared statement "_pg3_\d+"')

_POOLER_ADVICE = (
    "the connection probably goes through a pooler in transaction mode, where prepared "
    "statements do not survive a transaction: behind PgBouncer in transaction mode use "
    "PsycopgDriver(..., transaction_pooling=True)"
)


def connect_error(conninfo: str, exc: BaseException) -> ConnectError:
    """The ConnectError for a failed connection to ``conninfo``: libpq's first line, with
    any secret scrubbed. ``exc`` becomes its ``__cause__`` only if its whole text is free of
    secrets; raise the result outside the ``except`` block so it is not chained otherwise.
    """
    full = str(exc).strip()
    first = (full.splitlines() or ["connection failed"])[0]
    if not conninfo.strip():
        error = ConnectError(f"could not connect to PostgreSQL (libpq defaults): {first}")
        error.__cause__ = exc
        return error
    reading = read_conninfo(conninfo)
    hint = (
        "; in a URI, percent-encode @ / : ? # [ ] % in the password (%40 %2F ...)"
        if reading.ambiguous
        else ""
    )
    error = ConnectError(
        f"could not connect to PostgreSQL ({reading.shown}): {scrub(first, reading)}{hint}"
    )
    if not reading.ambiguous and scrub(full, reading) == full:
        error.__cause__ = exc
    return error


def _describe(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@contextlib.contextmanager
def translate_errors(*, schema: str | None = None) -> Iterator[None]:
    """Turn psycopg errors into typed errors of this library (the original is the cause).

    Missing objects mean the schema is not installed; connection-level failures become
    :class:`ConnectionLostError` (the reconnect logic retries those); anything else from the
    database is a :class:`DatabaseError`.
    """
    try:
        yield
    except (
        psycopg.errors.UndefinedTable,
        psycopg.errors.InvalidSchemaName,
        psycopg.errors.UndefinedFunction,
        psycopg.errors.UndefinedObject,
    ) as exc:
        where = f" in schema {schema!r}" if schema else ""
        raise SchemaNotInstalledError(
            f"schema not installed{where}: run `pgq-sync install` "
            f"(or `qm.queries.install()`) ({_describe(exc)})"
        ) from exc
    except (
        psycopg.errors.InvalidSqlStatementName,
        psycopg.errors.DuplicatePreparedStatement,
    ) as exc:
        if not _AUTOMATIC_STATEMENT.search(str(exc)):
            raise DatabaseError(_describe(exc)) from exc
        raise TransactionPoolingError(f"{_describe(exc)}: {_POOLER_ADVICE}") from exc
    except psycopg.errors.UndefinedColumn as exc:
        raise SchemaVersionError(
            f"the installed queue schema is out of date: run `pgq-sync upgrade` ({_describe(exc)})"
        ) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise ConnectionLostError(f"database connection failed: {_describe(exc)}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(_describe(exc)) from exc
