"""Fixtures for the async shim: every test runs on asyncio and on trio."""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio
import psycopg
import pytest

from pgqueue_sync import PsycopgDriver, Settings
from pgqueue_sync.db import Connection
from pgqueue_sync_aio import AsyncQueueManager

WORKER_ROLES = ("pgqueue-sync:listen", "pgqueue-sync:fetch", "pgqueue-sync:complete")


@pytest.fixture(params=["asyncio", "trio"])
def anyio_backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


class RecordingDriver(PsycopgDriver):
    """A PsycopgDriver that remembers the worker connections it opens."""

    def __init__(self, source: Connection) -> None:
        super().__init__(source)
        self.opened: list[Connection] = []
        self.pids: list[int] = []
        self.connected = threading.Event()  # set once a connection is opened

    def connect(self, role: str) -> Connection:
        conn = super().connect(role)
        self.opened.append(conn)
        self.pids.append(conn.info.backend_pid)
        self.connected.set()
        return conn


@pytest.fixture
def driver(conn: psycopg.Connection[Any]) -> RecordingDriver:
    return RecordingDriver(conn)


@pytest.fixture
def aqm(driver: RecordingDriver, settings: Settings) -> AsyncQueueManager:
    manager = AsyncQueueManager(driver, settings=settings)
    manager.sync.queries.install()
    return manager


def picked(conn: psycopg.Connection[Any], settings: Settings) -> int:
    table = settings.ident("jobs").as_string(None)
    row = conn.execute(f"SELECT count(*) FROM {table} WHERE status = 'picked'").fetchone()
    assert row is not None
    return int(row[0])


def engine_threads(before: set[threading.Thread]) -> list[str]:
    """Names of the engine's threads alive now that were not alive in ``before``."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("pgqueue-sync-") and t not in before and t.is_alive()
    ]


def _sessions(conn: psycopg.Connection[Any], pids: list[int]) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%s) "
        "AND split_part(application_name, ':', 1) || ':' || split_part(application_name, ':', 2)"
        " = ANY(%s)",
        (pids, list(WORKER_ROLES)),
    ).fetchone()
    assert row is not None
    return int(row[0])


def worker_sessions(conn: psycopg.Connection[Any], driver: RecordingDriver) -> tuple[int, int]:
    """(worker connections still open on our side, their server sessions still listed).

    A closed connection's backend leaves pg_stat_activity a moment after the client has gone;
    there is nothing to wait on for that, so this looks again for up to 10 s.
    """
    still_open = sum(1 for c in driver.opened if not c.closed)
    deadline = time.monotonic() + 10.0
    sessions = _sessions(conn, driver.pids)
    while sessions and time.monotonic() < deadline:
        time.sleep(0.01)
        sessions = _sessions(conn, driver.pids)
    return still_open, sessions


class Ticker:
    """A task that ticks every millisecond, recording the longest gap between ticks."""

    def __init__(self) -> None:
        self.ticks = 0
        self.max_gap = 0.0
        self._tick = anyio.Event()

    async def run(self) -> None:
        last = anyio.current_time()
        while True:
            await anyio.sleep(0.001)
            now = anyio.current_time()
            self.max_gap = max(self.max_gap, now - last)
            last = now
            self.ticks += 1
            self._tick.set()
            self._tick = anyio.Event()

    async def next_tick(self) -> None:
        await self._tick.wait()


@pytest.fixture
def threads_before() -> set[threading.Thread]:
    return set(threading.enumerate())
