"""The plumbing every query shares: a driver's connection, error translation, the clock.

:class:`~pgqueue_sync.queries.Queries` (the public API) and the engine's own statements
(:mod:`pgqueue_sync.engine.store`) build on :class:`QueryBase`; it has no public method of
its own.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Collection, Iterator
from datetime import timedelta
from typing import Any

import psycopg
from psycopg.rows import tuple_row

from .clock import Clock, SystemClock
from .db import Connection, Driver
from .settings import Settings
from .sql import statements
from .translate import translate_errors

__all__ = ["QueryBase"]


class QueryBase:
    """How every query runs: on a connection of the driver (or the caller's), psycopg's
    errors translated, stamped with the clock's time, with the queue's statements."""

    def __init__(
        self,
        driver: Driver,
        settings: Settings | None = None,
        *,
        clock: Clock | None = None,
        known_entrypoints: Callable[[], Collection[str]] | None = None,
    ) -> None:
        self.driver = driver
        self.settings = settings if settings is not None else Settings.from_env()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._known_entrypoints = known_entrypoints
        self._sql = statements(self.settings)
        self._sequence: str | None = None

    # -- plumbing ------------------------------------------------------------------------

    @contextlib.contextmanager
    def _conn(
        self, connection: Connection | psycopg.Cursor[Any] | None = None
    ) -> Iterator[Connection]:
        with translate_errors(schema=self.settings.schema, prefix=self.settings.prefix) as scope:
            if isinstance(connection, psycopg.Cursor):
                scope.connection = connection.connection
                yield connection.connection
            elif connection is not None:
                scope.connection = connection
                yield connection
            else:
                with self.driver.connection() as conn:
                    scope.connection = conn
                    yield conn

    def _params(self, **params: Any) -> dict[str, Any]:
        params["now"] = self.clock.now()
        return params

    def _row(self, statement: bytes, **params: Any) -> tuple[Any, ...]:
        with self._conn() as conn, conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(statement, self._params(**params))
            row = cur.fetchone()
            assert row is not None
            return row

    def _notify(self, payload: str) -> None:
        with self._conn() as conn:
            conn.execute(self._sql.notify, {"payload": payload})

    def _prune_log(self, older_than: timedelta, batch_size: int) -> int:
        total = 0
        while True:
            with self._conn() as conn, conn.cursor() as cur:
                cur.execute(
                    self._sql.prune_log, self._params(older_than=older_than, batch=batch_size)
                )
                total += cur.rowcount
                if cur.rowcount < batch_size:
                    return total
