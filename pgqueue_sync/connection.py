"""A worker's dedicated connection: opened on first use, reopened after it breaks, cut
when a statement waits on a dead link longer than the driver's ``stall_timeout``."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence

import psycopg

from .clock import elapsed_since, now_real
from .db import Connection, Driver

__all__ = ["ManagedConnection", "worker_connections"]

logger = logging.getLogger(__name__)


class ManagedConnection:
    """One dedicated autocommit connection of a worker, reopened after it breaks.

    It is itself a Driver, so the same query code runs over it. ``setup`` statements run
    on every new connection before its first use (session settings). ``listen``: the
    connection is for LISTEN (opened with the driver's ``connect_listener``).
    ``on_reconnect`` is called (under its lock: it must be quick) each time a connection
    opens after the first, in place of one that was lost.
    """

    def __init__(
        self,
        driver: Driver,
        role: str,
        setup: Sequence[bytes] = (),
        *,
        listen: bool = False,
        on_reconnect: Callable[[], None] | None = None,
    ) -> None:
        self._driver = driver
        self.role = role
        # Connections opened so far: each one after the first replaces a lost one.
        self.opened = 0
        self._on_reconnect = on_reconnect
        self._setup = tuple(setup)
        self._listen = listen
        self._conn: Connection | None = None
        self._lock = threading.Lock()
        self._busy_since: float | None = None

    @property
    def stall_timeout(self) -> float:
        return self._driver.stall_timeout

    @property
    def transaction_pooling(self) -> bool:
        return self._driver.transaction_pooling

    @property
    def can_listen(self) -> bool:
        return self._driver.can_listen

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
            if self._listen:
                conn = self._driver.connect_listener(self.role)
            else:
                conn = self._driver.connect(self.role)
            try:
                for statement in self._setup:
                    conn.execute(statement)
            except BaseException:
                with contextlib.suppress(Exception):
                    conn.close()
                raise
            self._conn = conn
            self.opened += 1
            if self.opened > 1 and self._on_reconnect is not None:
                self._on_reconnect()
        return conn

    @contextlib.contextmanager
    def connection(self) -> Iterator[Connection]:
        with self._lock:
            conn = self._ensure()
            self._busy_since = now_real()
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
        if since is None or conn is None or elapsed_since(since) < self.stall_timeout:
            return False
        logger.warning(
            "%s connection stalled for %.1f s: cutting it", self.role, elapsed_since(since)
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

    def connect_listener(self, role: str) -> Connection:
        return self._driver.connect_listener(role)

    def close(self) -> None:
        with self._lock:
            self._discard()


def worker_connections(
    driver: Driver,
    tag: str,
    *,
    fetch_setup: Sequence[bytes] = (),
    on_reconnect: Callable[[str], None] | None = None,
) -> dict[str, ManagedConnection]:
    """A worker's own connections, by role: ``fetch`` (claims), ``complete`` (outcomes,
    heartbeats) and ``listen`` (which claims too while the fetch loop sleeps; ``fetch_setup``
    runs on both claiming connections). Each one's application_name is
    pgqueue-sync:<role>:<tag> (the worker id's prefix), to find them in pg_stat_activity
    next to the worker's logs. ``on_reconnect(role)``: one of them replaced a lost one."""

    def told(role: str) -> Callable[[], None] | None:
        if on_reconnect is None:
            return None
        return lambda: on_reconnect(role)

    return {
        "fetch": ManagedConnection(
            driver, f"fetch:{tag}", setup=fetch_setup, on_reconnect=told("fetch")
        ),
        "complete": ManagedConnection(driver, f"complete:{tag}", on_reconnect=told("complete")),
        "listen": ManagedConnection(
            driver,
            f"listen:{tag}",
            setup=fetch_setup,
            listen=True,
            on_reconnect=told("listen"),
        ),
    }
