"""A queue of its own for a test: a fresh schema on the test database, dropped afterwards."""

from __future__ import annotations

import uuid
from typing import Any, TypeVar

from psycopg import sql

from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.qm import QueueManager
from pgqueue_sync.queries import Queries
from pgqueue_sync.settings import Settings
from pgqueue_sync.translate import translate_errors

from .draining import AnyManager, drain_queue, split
from .outcomes import JobOutcome

__all__ = ["TemporaryQueue"]

M = TypeVar("M", bound="AnyManager")

# A test that leaves a transaction open on the queue's tables (a session never rolled
# back) must fail the drop at teardown, not hang it.
DROP_LOCK_TIMEOUT = "30s"


class TemporaryQueue:
    """A queue in a new schema (``pgqueue_test_<random>``) of the database at ``dsn``:
    installed when made, dropped by ``close`` (the ``pgqueue`` fixture does both).

    - ``dsn``, ``schema``, ``settings``: where it is (give them to the code under test:
      ``PGQUEUE_DSN``/``PGQUEUE_SCHEMA``, a Flask app's config, ``Settings``).
    - ``driver``, ``queries``: its own connection and operations (enqueue, history, ...).
    - ``manager`` makes a QueueManager on it; ``use`` points an existing one (the
      application's, with its handlers) at it until ``close``.
    - ``drain`` runs every due job now, in the test's thread, and reports each.
    """

    def __init__(self, dsn: str, *, schema: str | None = None) -> None:
        self.dsn = dsn
        self.schema = schema if schema is not None else f"pgqueue_test_{uuid.uuid4().hex[:12]}"
        self.settings = Settings(schema=self.schema)
        self.driver = PsycopgDriver(dsn)
        self.queries = Queries(self.driver, self.settings)
        self._undo: list[tuple[object, str, object]] = []
        try:
            self.queries.install()
        except BaseException:
            self.driver.close()
            raise

    def manager(self, **kwargs: Any) -> QueueManager:
        """A new QueueManager on this queue (``kwargs``: those of QueueManager but the
        driver and settings)."""
        return QueueManager(self.driver, settings=self.settings, **kwargs)

    def use(self, manager: M) -> M:
        """Point ``manager`` (a QueueManager or an AsyncQueueManager, say the application's
        own) at this queue until ``close``: its ``driver``, ``settings`` and
        ``queries`` (so its tasks enqueue here). Returns it."""
        sync, aio = split(manager)
        # Read at each call: the entrypoints registered by then.
        known = (lambda: sync.entrypoints.keys()) if sync.check_entrypoints else None  # noqa: PLW0108
        queries = Queries(self.driver, self.settings, clock=sync.clock, known_entrypoints=known)
        self._patch(sync, "driver", self.driver)
        self._patch(sync, "settings", self.settings)
        self._patch(sync, "queries", queries)
        if aio is not None:
            from pgqueue_sync_aio import AsyncQueries  # noqa: PLC0415 - imports anyio

            self._patch(aio, "queries", AsyncQueries(queries))
        return manager

    def drain(
        self, manager: AnyManager, *, raise_errors: bool = False, max_jobs: int = 1000
    ) -> list[JobOutcome]:
        """Run every job due in this queue with ``manager``'s handlers, in the calling
        thread, until none is due; how each ended, in order. See
        ``pgqueue_sync.testing.drain``."""
        return drain_queue(
            manager,
            driver=self.driver,
            settings=self.settings,
            raise_errors=raise_errors,
            max_jobs=max_jobs,
        )

    def close(self) -> None:
        """Give back the managers ``use`` changed, drop the schema, close the driver."""
        while self._undo:
            target, name, value = self._undo.pop()
            setattr(target, name, value)
        try:
            with translate_errors(schema=self.schema), self.driver.connection() as conn:
                conn.execute(
                    sql.SQL("SET lock_timeout = {}").format(sql.Literal(DROP_LOCK_TIMEOUT))
                )
                conn.execute(
                    sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema))
                )
        finally:
            self.driver.close()

    def _patch(self, target: object, name: str, value: object) -> None:
        self._undo.append((target, name, getattr(target, name)))
        setattr(target, name, value)

    def __repr__(self) -> str:
        return f"<TemporaryQueue schema={self.schema!r}>"
