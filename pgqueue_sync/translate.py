"""psycopg's errors as this library's, in one place: messages that say what to do and
never carry a password."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Iterator
from typing import Any

import psycopg
import psycopg.errors

from .errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    DatabaseError,
    SchemaNotInstalledError,
    SchemaVersionError,
    TransactionPoolingError,
)
from .redaction import NOT_SHOWN, read_conninfo, scrub

__all__ = [
    "ErrorScope",
    "connect_error",
    "database_location",
    "describe",
    "not_installed_message",
    "parse_conninfo",
    "translate_errors",
]


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


def describe(exc: BaseException) -> str:
    """The first line of an error's message (its type's name if it has none)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def database_location(conn: psycopg.Connection[Any] | None) -> str:
    """Which database a connection is on, for messages: ``database 'app' on host:port``
    (never a password: only the database name, host and port are shown)."""
    if conn is None:
        return "the database"
    try:
        info = conn.info
        name, host, port = info.dbname, info.host, info.port
    except (psycopg.Error, OSError, ValueError):
        return "the database"
    return f"database {name!r} on {host}:{port}"


@dataclasses.dataclass
class ErrorScope:
    """What :func:`translate_errors` knows of where an error happened: the connection the
    statement ran on, once the caller has one (messages then name its database)."""

    connection: psycopg.Connection[Any] | None = None


def not_installed_message(schema: str | None, where: str, prefix: str = "") -> str:
    """The message of SchemaNotInstalledError: where the queue was looked for, what to do."""
    table_prefix = f", prefix {prefix!r}" if prefix else ""
    in_schema = f" in schema {schema!r}{table_prefix} of" if schema else " in"
    return (
        f"schema not installed{in_schema} {where}: run `pgq-sync install` (or "
        "`qm.queries.install()`) there, or point the application at the database and schema "
        "where the queue is"
    )


@contextlib.contextmanager
def translate_errors(*, schema: str | None = None, prefix: str = "") -> Iterator[ErrorScope]:
    """Turn psycopg errors into typed errors of this library (the original is the cause).

    Missing objects mean the schema is not installed (the message names the schema, and
    the database and host of the connection set on the yielded :class:`ErrorScope`);
    connection-level failures become :class:`ConnectionLostError` (the reconnect logic
    retries those); anything else from the database is a :class:`DatabaseError`.
    """
    scope = ErrorScope()
    try:
        yield scope
    except (
        psycopg.errors.UndefinedTable,
        psycopg.errors.InvalidSchemaName,
        psycopg.errors.UndefinedFunction,
        psycopg.errors.UndefinedObject,
    ) as exc:
        where = database_location(scope.connection)
        raise SchemaNotInstalledError(
            f"{not_installed_message(schema, where, prefix)} ({describe(exc)})"
        ) from exc
    except (
        psycopg.errors.InvalidSqlStatementName,
        psycopg.errors.DuplicatePreparedStatement,
        # "bind message supplies 10 parameters, but prepared statement "_pg3_0" requires
        # 6": the name was prepared for another statement on that server connection.
        psycopg.errors.ProtocolViolation,
    ) as exc:
        if not _AUTOMATIC_STATEMENT.search(str(exc)):
            raise DatabaseError(describe(exc)) from exc
        raise TransactionPoolingError(f"{describe(exc)}: {_POOLER_ADVICE}") from exc
    except psycopg.errors.UndefinedColumn as exc:
        raise SchemaVersionError(
            f"the installed queue schema is out of date: run `pgq-sync upgrade` ({describe(exc)})"
        ) from exc
    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
        raise ConnectionLostError(f"database connection failed: {describe(exc)}") from exc
    except psycopg.Error as exc:
        raise DatabaseError(describe(exc)) from exc
