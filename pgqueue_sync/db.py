"""Database access: the Driver protocol and PsycopgDriver, over psycopg 3.

A driver hands out connections for the producer-side API (``qm.queries``) and opens the
dedicated connections a worker needs (listen, fetch, complete) from the same conninfo.

Behind a pooler in transaction mode (PgBouncer's ``pool_mode = transaction``) a client's
statements run on whichever server connection is free: nothing of a session survives a
transaction. ``PsycopgDriver(..., transaction_pooling=True)`` then turns psycopg's
automatic prepared statements off and tells the worker to keep no session settings; LISTEN
needs a session of its own, on ``listen_dsn`` (straight to PostgreSQL), or the worker polls.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Iterator
from typing import Any, Protocol, runtime_checkable

import psycopg
from psycopg.conninfo import make_conninfo
from psycopg_pool import ConnectionPool

from .errors import ConfigurationError
from .options import duration
from .redaction import redact_conninfo
from .translate import connect_error, parse_conninfo

__all__ = ["WORKER_CONNECTION_OPTIONS", "Connection", "Driver", "PsycopgDriver"]

logger = logging.getLogger(__name__)

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
    """What the queue needs from a database driver (``PsycopgDriver`` is one)."""

    @property
    def stall_timeout(self) -> float:
        """How long a worker statement may wait for the server before its connection is
        presumed dead and cut."""
        ...

    @property
    def transaction_pooling(self) -> bool:
        """Whether connections go through a pooler in transaction mode (no session state,
        no prepared statements)."""
        ...

    @property
    def can_listen(self) -> bool:
        """Whether LISTEN works: not through a transaction pooler, unless connections to
        listen on bypass it."""
        ...

    def connection(self) -> contextlib.AbstractContextManager[Connection]:
        """A connection to run statements on; each is committed by the time the block exits."""
        ...

    def connect(self, role: str) -> Connection:
        """Open a new autocommit connection of the queue's own, named after ``role``."""
        ...

    def connect_listener(self, role: str) -> Connection:
        """Open a new autocommit connection to LISTEN on, named after ``role``."""
        ...

    def close(self) -> None:
        """Close what the driver opened itself (never a connection or pool it was given)."""
        ...


# Keyword arguments of psycopg.connect() that are not libpq connection parameters (a pool's
# kwargs may hold them): they cannot go into a conninfo string.
_CONNECT_ONLY = frozenset(
    {"autocommit", "prepare_threshold", "row_factory", "cursor_factory", "context"}
)


def _open(
    conninfo: str,
    role: str,
    connect_timeout: float,
    *,
    prepare: bool = True,
    **defaults: Any,
) -> Connection:
    params: dict[str, Any] = dict(parse_conninfo(conninfo))
    params.setdefault("connect_timeout", max(1, round(connect_timeout)))
    params["application_name"] = f"pgqueue-sync:{role}"
    for key, value in defaults.items():  # what the conninfo says wins
        params.setdefault(key, value)
    # prepare=False: no automatic prepared statements (a transaction pooler loses them).
    options: dict[str, Any] = {} if prepare else {"prepare_threshold": None}
    try:
        return psycopg.connect(make_conninfo("", **params), autocommit=True, **options)
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

    Workers always open their own connections, from the same conninfo. A connection
    string is never shown with its password.

    Args:
        source: a ``psycopg.Connection`` (autocommit or not; producer calls share it, one
            at a time), a ``psycopg_pool.ConnectionPool`` (each call borrows a
            connection), or a conninfo/URI string (the driver opens, and reopens after a
            failure, a connection of its own).
        connect_timeout: seconds a connection attempt may take. Default 10.
        stall_timeout: a worker statement that has waited this long (seconds) for the
            server is presumed stuck on a dead link; its connection is cut and the
            statement retried on a new one. Default 60.
        listen_dsn: a conninfo straight to PostgreSQL (or to a session-mode pool) where
            workers and ``wait_for`` LISTEN; needed behind a transaction pooler, where
            LISTEN cannot work (without it they poll). Default None: listen over
            ``source``'s conninfo.
        transaction_pooling: True behind PgBouncer (or any pooler) in transaction mode:
            psycopg's automatic prepared statements are turned off on every connection
            the driver opens or hands out (``prepare_threshold = None``), and workers keep
            no session settings. Default False.

    Raises:
        ConfigurationError: a conninfo that cannot be parsed (described, never echoed),
            a closed connection, an invalid timeout, or a ``source`` of another type.
    """

    def __init__(
        self,
        source: Connection | ConnectionPool[Any] | str,
        *,
        connect_timeout: float = 10.0,
        stall_timeout: float = 60.0,
        listen_dsn: str | None = None,
        transaction_pooling: bool = False,
    ) -> None:
        if not isinstance(transaction_pooling, bool):
            raise ConfigurationError("transaction_pooling must be True or False")
        if listen_dsn is not None:
            try:
                parse_conninfo(listen_dsn)
            except ConfigurationError as exc:
                raise ConfigurationError(f"invalid listen_dsn: {exc}") from None
        self._lock = threading.RLock()
        self._connect_timeout = duration(connect_timeout, "connect_timeout")
        self.stall_timeout = duration(stall_timeout, "stall_timeout")
        self._listen_dsn = listen_dsn
        self._transaction_pooling = transaction_pooling
        self._owned: Connection | None = None
        self._conn: Connection | None = None
        self._pool: ConnectionPool[Any] | None = None
        if isinstance(source, psycopg.Connection):
            if source.closed:
                raise ConfigurationError("the connection given to PsycopgDriver is closed")
            self._conn = source
            self._conninfo = _conninfo_of(source)
            if transaction_pooling:
                source.prepare_threshold = None
        elif isinstance(source, ConnectionPool):
            self._pool = source
            conninfo = source.conninfo() if callable(source.conninfo) else source.conninfo
            kwargs = source.kwargs() if callable(source.kwargs) else source.kwargs
            kwargs = {k: v for k, v in (kwargs or {}).items() if k not in _CONNECT_ONLY}
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
        """Seconds a connection attempt may take."""
        return self._connect_timeout

    @property
    def transaction_pooling(self) -> bool:
        """Whether connections go through a pooler in transaction mode (PgBouncer)."""
        return self._transaction_pooling

    @property
    def listen_dsn(self) -> str | None:
        """Where workers and ``wait_for`` LISTEN, if not over the main conninfo (it may hold
        a password: do not log)."""
        return self._listen_dsn

    @property
    def can_listen(self) -> bool:
        """Whether LISTEN works: always, except through a transaction pooler without
        ``listen_dsn`` (workers and ``wait_for`` then poll)."""
        return self._listen_dsn is not None or not self._transaction_pooling

    @property
    def max_connections(self) -> int:
        """How many producer calls can use the database at once: the pool's ``max_size``,
        else 1 (one connection, shared). The async shim sizes its thread limiter with it."""
        return self._pool.max_size if self._pool is not None else 1

    def __repr__(self) -> str:
        extra = ""
        if self._listen_dsn is not None:
            extra += f", listen_dsn={redact_conninfo(self._listen_dsn)!r}"
        if self._transaction_pooling:
            extra += ", transaction_pooling=True"
        return f"PsycopgDriver({redact_conninfo(self._conninfo)!r}{extra})"

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        """A connection for one producer call; committed by the end of the block."""
        if self._pool is not None:
            with self._pool.connection() as conn:
                if self._transaction_pooling:
                    conn.prepare_threshold = None
                yield conn
            return
        with self._lock:
            if self._conn is not None:
                conn = self._conn
            else:
                if self._owned is None or self._owned.closed or self._owned.broken:
                    self._owned = _open(
                        self._conninfo,
                        "client",
                        self._connect_timeout,
                        prepare=not self._transaction_pooling,
                    )
                conn = self._owned
            if conn.autocommit:
                yield conn
            else:
                with conn.transaction():
                    yield conn

    def connect(self, role: str) -> Connection:
        """Open a new autocommit connection of the queue's own (a worker's).

        Args:
            role: names the connection in ``pg_stat_activity`` (``pgqueue-sync:ROLE:...``).
        """
        return _open(
            self._conninfo,
            role,
            self._connect_timeout,
            prepare=not self._transaction_pooling,
            **WORKER_CONNECTION_OPTIONS,
        )

    def connect_listener(self, role: str) -> Connection:
        """Open a connection to LISTEN on: to ``listen_dsn`` if given, else as ``connect``.

        Raises ConfigurationError through a transaction pooler without ``listen_dsn``,
        where a LISTEN would register on a server connection that other clients then get.
        """
        if self._listen_dsn is not None:
            return _open(self._listen_dsn, role, self._connect_timeout, **WORKER_CONNECTION_OPTIONS)
        if self._transaction_pooling:
            raise ConfigurationError(
                "LISTEN does not work through a pooler in transaction mode: pass "
                "PsycopgDriver(..., listen_dsn=<a conninfo straight to PostgreSQL>)"
            )
        return self.connect(role)

    def close(self) -> None:
        """Close what the driver opened itself (never a connection or pool it was given)."""
        with self._lock:
            if self._owned is not None:
                self._owned.close()
                self._owned = None
