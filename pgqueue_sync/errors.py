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
from psycopg.conninfo import conninfo_to_dict, make_conninfo

__all__ = [
    "ConfigurationError",
    "ConnectError",
    "ConnectionLostError",
    "DatabaseError",
    "DuplicateJobError",
    "InvalidEntrypointError",
    "InvalidPayloadError",
    "JobLostError",
    "JobNotFoundError",
    "JobTimeoutError",
    "PayloadTooLargeError",
    "PgQueueError",
    "SchemaNotInstalledError",
    "SchemaVersionError",
    "UnknownEntrypointError",
    "WaitTimeoutError",
    "redact_conninfo",
    "translate_errors",
]


class PgQueueError(Exception):
    """Root of every exception raised by pgqueue-sync."""


class ConfigurationError(PgQueueError, ValueError):
    """A setting or argument is invalid (schema name, prefix, batch size, ...)."""


class InvalidEntrypointError(ConfigurationError):
    """An entrypoint name is empty, too long, or has characters outside the allowed set."""


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


class ConnectionLostError(DatabaseError):
    """The connection failed during an operation; its outcome may be unknown. Retry."""


_PASSWORD_IN_URI = re.compile(r"(postgres(?:ql)?://[^:/@]*:)([^@]*)(@)")


def redact_conninfo(conninfo: str) -> str:
    """Return ``conninfo`` with any password replaced by ``***``."""
    try:
        params = conninfo_to_dict(conninfo)
    except psycopg.ProgrammingError:
        # Not parseable: hide anything that looks like a password.
        text = _PASSWORD_IN_URI.sub(r"\1***\3", conninfo)
        return re.sub(r"(password\s*=\s*)('[^']*'|\S+)", r"\1***", text)
    if "password" in params:
        params["password"] = "***"  # noqa: S105 - a mask, not a secret
    return make_conninfo("", **params)


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
    except psycopg.errors.UndefinedColumn as exc:
        raise SchemaVersionError(
            f"the installed queue schema is out of date: run `pgq-sync upgrade` ({_describe(exc)})"
        ) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise ConnectionLostError(f"database connection failed: {_describe(exc)}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(_describe(exc)) from exc
