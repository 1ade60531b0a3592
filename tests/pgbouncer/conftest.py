"""Fixtures for running producers and workers through a real PgBouncer in transaction mode.

The pool is small (2 server connections, handed out round robin) and shared by every
connection of a test: the worker's fetch, complete and heartbeat connections and the
producer's. Anything that relied on session state (prepared statements, SET, LISTEN) would
meet another client's server connection at once. The tests skip when the ``pgbouncer``
binary is missing (``.ci/run`` installs it).
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue_sync import (
    Job,
    PsycopgDriver,
    QueueManager,
    Settings,
)
from tests.conftest import Runner
from tests.pgbouncer.server import PgBouncer, pgbouncer_binary

Start = Callable[..., Runner]

# psycopg prepares a statement the 5th time a connection runs it: every loop below runs its
# statements more often than that.
REPEAT = 8


@pytest.fixture
def bouncer(dsn: str, tmp_path: Path) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    with PgBouncer(dsn, tmp_path, pool_mode="transaction", pool_size=2) as running:
        yield running


Make = Callable[..., QueueManager]


@pytest.fixture
def make_qm(bouncer: PgBouncer, settings: Settings) -> Iterator[Make]:
    """QueueManagers whose driver goes through PgBouncer (in transaction pooling mode unless
    told otherwise); their drivers are closed afterwards. Ask for it before ``runner``."""
    drivers: list[PsycopgDriver] = []

    def make(**driver_options: Any) -> QueueManager:
        driver_options.setdefault("transaction_pooling", True)
        driver = PsycopgDriver(bouncer.dsn, **driver_options)
        drivers.append(driver)
        qm = QueueManager(driver, settings=settings)
        qm.queries.install()
        return qm

    yield make
    for driver in drivers:
        driver.close()


class Recorder:
    """Counts handler runs per job id; ``done`` is set once ``expected`` jobs ran."""

    def __init__(self, expected: int) -> None:
        self.runs: Counter[int] = Counter()
        self.expected = expected
        self.done = threading.Event()
        self._lock = threading.Lock()

    def __call__(self, job: Job) -> None:
        with self._lock:
            self.runs[job.id] += 1
            if len(self.runs) >= self.expected:
                self.done.set()


def statuses(conn: psycopg.Connection[Any], settings: Settings) -> Counter[str]:
    jobs = settings.ident("jobs").as_string(None)
    log = settings.ident("log").as_string(None)
    rows = conn.execute(
        f"SELECT status::text FROM {jobs} UNION ALL SELECT status::text FROM {log}"
    ).fetchall()
    return Counter(row[0] for row in rows)
