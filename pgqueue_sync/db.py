"""Database access: the Driver protocol and PsycopgDriver, over psycopg 3.

A driver hands out connections for the producer-side API (``qm.queries``) and opens the
dedicated connections a worker needs (listen, fetch, complete) from the same conninfo.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any, Protocol, runtime_checkable

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from .errors import ConfigurationError, connect_error, parse_conninfo, redact_conninfo
from .options import duration

__all__ = ["Connection", "Driver", "ManagedConnection", "PsycopgDriver"]

logger = logging.getLogger("pgqueue_sync")

Connection = psycopg.Connection[Any]

# TCP keepalives on the worker's own connections: a dead peer or a black-holed link is
# noticed in about 25 s (30 s with data in flight) instead of the kernel's default two
# hours. libpq ignores them on Unix-domain sockets; the conninfo may set other values.
WORKER_CONNECTION_OPTIONS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 5,
    "keepalives_count": 3,
    "tcp_user_timeout": 30_000,
}


@runtime_checkable
class Driver(Protocol):
    """What the queue needs from a database driver."""

    def connection(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection to run statements on; each is committed by the time the block exits."""
        ...

    def connect(self, role: str) -> Connection:
        """Open a new autocommit connection of the queue's own, named after ``role``."""
        ...

    def close(self) -> None:
        """Close what the driver opened itself (never a connection or pool it was given)."""
        ...


def _open(conninfo: str, role: str, connect_timeout: float, **defaults: Any) -> Connection:
    params: dict[str, Any] = dict(parse_conninfo(conninfo))
    params.setdefault("connect_timeout", max(1, round(connect_timeout)))
    params["application_name"] = f"pgqueue-sync:{role}"
    for key, value in defaults.items():  # what the conninfo says wins
        params.setdefault(key, value)
    try:
        return psycopg.connect(make_conninfo("", **params), autocommit=True)
    except psycopg.Error as exc:
        error = connect_error(conninfo, exc)
    # Raised here, not in the except block: libpq's error is chained only if it is safe.
    raise error


def _with_kwargs(conninfo: str, kwargs: dict[str, Any]) -> str:
    """A pool's conninfo with its connection kwargs merged in."""
    try:
        return make_conninfo(conninfo, **kwargs)
    except psycopg.Error:
        pass
    raise ConfigurationError(
        f"the pool's kwargs are not valid connection parameters: {', '.join(sorted(kwargs))}"
    )


def _conninfo_of(conn: Connection) -> str:
    """Rebuild the full conninfo of an open connection, password included."""
    params: dict[str, Any] = dict(conn.info.get_parameters())
    for option in conn.pgconn.info:
        if option.keyword == b"password" and option.val:
            params["password"] = option.val.decode()
    return make_conninfo("", **params)


class PsycopgDriver:
    """A driver over a psycopg ``Connection``, a ``ConnectionPool``, or a conninfo/DSN string.

    - With a ``Connection`` (autocommit or not), producer calls share it, one at a time.
    - With a ``ConnectionPool``, each call borrows a connection.
    - With a string, the driver opens (and reopens after a failure) a connection of its own.

    Workers always open their own connections, from the same conninfo. ``stall_timeout``:
    a worker statement that has waited this long for the server is presumed stuck on a dead
    link; its connection is cut and the statement retried on a new one.
    """

    def __init__(
        self,
        source: Connection | ConnectionPool[Any] | str,
        *,
        connect_timeout: float = 10.0,
        stall_timeout: float = 60.0,
    ) -> None:
        self._lock = threading.RLock()
        self._connect_timeout = duration(connect_timeout, "connect_timeout")
        self.stall_timeout = duration(stall_timeout, "stall_timeout")
        self._owned: Connection | None = None
        self._conn: Connection | None = None
        self._pool: ConnectionPool[Any] | None = None
        if isinstance(source, psycopg.Connection):
            if source.closed:
                raise ConfigurationError("the connection given to PsycopgDriver is closed")
            self._conn = source
            self._conninfo = _conninfo_of(source)
        elif isinstance(source, ConnectionPool):
            self._pool = source
            conninfo = source.conninfo() if callable(source.conninfo) else source.conninfo
            kwargs = source.kwargs() if callable(source.kwargs) else source.kwargs
            kwargs = {k: v for k, v in (kwargs or {}).items() if k != "autocommit"}
            parse_conninfo(conninfo or "")
            self._conninfo = _with_kwargs(conninfo or "", kwargs)
        elif isinstance(source, str):
            parse_conninfo(source)
            self._conninfo = source
        else:
            raise ConfigurationError(
                "PsycopgDriver needs a psycopg.Connection, a psycopg_pool.ConnectionPool or a "
                f"conninfo string, not {type(source).__name__}"
            )

    @property
    def conninfo(self) -> str:
        """The connection string workers connect with (it may hold a password: do not log)."""
        return self._conninfo

    @property
    def connect_timeout(self) -> float:
        return self._connect_timeout

    @property
    def max_connections(self) -> int:
        """How many producer calls can use the database at once: the pool's ``max_size``,
        else 1 (one connection, shared). The async shim sizes its thread limiter with it."""
        return self._pool.max_size if self._pool is not None else 1

    def __repr__(self) -> str:
        return f"PsycopgDriver({redact_conninfo(self._conninfo)!r})"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        if self._pool is not None:
            with self._pool.connection() as conn:
                yield conn
            return
        with self._lock:
            if self._conn is not None:
                conn = self._conn
            else:
                if self._owned is None or self._owned.closed or self._owned.broken:
                    self._owned = _open(self._conninfo, "client", self._connect_timeout)
                conn = self._owned
            if conn.autocommit:
                yield conn
            else:
                with conn.transaction():
                    yield conn

    def connect(self, role: str) -> Connection:
        return _open(self._conninfo, role, self._connect_timeout, **WORKER_CONNECTION_OPTIONS)

    def close(self) -> None:
        with self._lock:
            if self._owned is not None:
                self._owned.close()
                self._owned = None


class ManagedConnection:
    """One dedicated autocommit connection of a worker, reopened after it breaks.

    It is itself a Driver, so the same Queries code runs over it. ``setup`` statements run
    on every new connection before its first use (session settings).
    """

    def __init__(self, driver: Driver, role: str, setup: Sequence[bytes] = ()) -> None:
        self._driver = driver
        self.role = role
        self._setup = tuple(setup)
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._busy_since: float | None = None
        self.stall_timeout = float(getattr(driver, "stall_timeout", 60.0))

    @property
    def is_open(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.closed and not conn.broken

    def raw(self) -> Connection:
        """The underlying connection, opened if needed (for LISTEN loops)."""
        with self._lock:
            return self._ensure()

    def _ensure(self) -> Connection:
        conn = self._conn
        if conn is None or conn.closed or conn.broken:
            if conn is not None:
                with contextlib.suppress(Exception):
                    conn.close()
            self._conn = None
            conn = self._driver.connect(self.role)
            try:
                for statement in self._setup:
                    conn.execute(statement)
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
            self._conn = conn
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._lock:
            conn = self._ensure()
            self._busy_since = time.monotonic()
            try:
                yield conn
            except (psycopg.OperationalError, psycopg.InterfaceError):
                if conn.broken or conn.closed:
                    self._discard()
                raise
            finally:
                self._busy_since = None

    def abort_if_stalled(self) -> bool:
        """Cut the connection if a statement has waited on it longer than ``stall_timeout``.

        Shutting the socket down makes the blocked call fail at once, so the caller's
        reconnect logic takes over. Safe to call from any thread.
        """
        since, conn = self._busy_since, self._conn
        if since is None or conn is None or time.monotonic() - since < self.stall_timeout:
            return False
        logger.warning(
            "%s connection stalled for %.1f s: cutting it", self.role, time.monotonic() - since
        )
        self.abort()
        return True

    def abort(self) -> None:
        """Cut the connection now, whatever it is doing (a statement blocked on the server
        fails at once in the thread running it). Safe to call from any thread."""
        conn = self._conn
        if conn is None or conn.closed:
            return
        with contextlib.suppress(OSError, psycopg.Error):
            sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
            try:
                sock.shutdown(socket.SHUT_RDWR)
            finally:
                sock.close()

    def _discard(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.close()

    def connect(self, role: str) -> Connection:
        return self._driver.connect(role)

    def close(self) -> None:
        with self._lock:
            self._discard()
