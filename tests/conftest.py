"""Shared fixtures: a real PostgreSQL, and a fresh schema for every test.

The database comes from ``PGQUEUE_TEST_DSN``; else the local server at 127.0.0.1:5432 (user
postgres, database test) if it answers; else an embedded server (pgserver) started once for
the session.
"""

from __future__ import annotations

import os
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck
from hypothesis import settings as hypothesis_settings

from pgqueue_sync import JobResult, PsycopgDriver, Queries, QueueManager, Settings
from pgqueue_sync.embedded import embedded_postgres
from pgqueue_sync.engine.store import Store

LOCAL_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"

# Hypothesis profiles (docs/testing.md). max_examples is what each state machine run against
# PostgreSQL gets; the machine run against the model alone multiplies it. Registered here,
# before the Hypothesis plugin reads --hypothesis-profile; PGQUEUE_HYPOTHESIS_PROFILE picks
# one without the option.
_PROFILE_DEFAULTS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.filter_too_much],
}
hypothesis_settings.register_profile(
    "ci", max_examples=40, stateful_step_count=25, **_PROFILE_DEFAULTS
)
hypothesis_settings.register_profile(
    "dev", max_examples=100, stateful_step_count=30, **_PROFILE_DEFAULTS
)
hypothesis_settings.register_profile(
    "long", max_examples=1000, stateful_step_count=50, **_PROFILE_DEFAULTS
)
hypothesis_settings.load_profile(os.environ.get("PGQUEUE_HYPOTHESIS_PROFILE", "ci"))


class SqlQueries(Queries, Store):
    """The public queries and the engine's own statements on one object: for tests of the
    SQL itself (a worker's claims, completions and heartbeats beside enqueue)."""


def engine(qm: QueueManager) -> Store:
    """The engine's own statements over ``qm``'s driver: what another worker would run
    (claim, complete, heartbeat, release), for tests that play that worker by hand."""
    return Store(qm.driver, qm.settings, clock=qm.clock)


def _answers(dsn: str) -> bool:
    try:
        with psycopg.connect(dsn, connect_timeout=3):
            return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def dsn() -> Iterator[str]:
    env = os.environ.get("PGQUEUE_TEST_DSN")
    if env:
        yield env
    elif _answers(LOCAL_DSN):
        yield LOCAL_DSN
    else:
        with embedded_postgres() as uri:
            yield uri


@pytest.fixture
def schema(dsn: str) -> Iterator[str]:
    name = f"t_{uuid.uuid4().hex[:12]}"
    yield name
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def settings(schema: str) -> Settings:
    return Settings(schema=schema)


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(dsn, autocommit=True) as connection:
        yield connection


@pytest.fixture
def driver(conn: psycopg.Connection[Any]) -> PsycopgDriver:
    return PsycopgDriver(conn)


@pytest.fixture
def qm(driver: PsycopgDriver, settings: Settings) -> QueueManager:
    manager = QueueManager(driver, settings=settings)
    manager.queries.install()
    return manager


def eventually(predicate: Callable[[], bool], timeout: float = 10.0) -> bool:
    """Wait for state outside this process (e.g. the server ending a closed session's
    backend) that no event reports; True once ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def backend_idle_after(
    conn: psycopg.Connection[Any],
    role: str,
    schema: str,
    marker: str,
    since: datetime | None = None,
) -> bool:
    """Whether a connection of ``role`` (``pgqueue-sync:<role>...``) working on ``schema``
    has run a statement containing ``marker`` last (started after ``since``, if given) and
    now sits idle.

    The server's view of a worker's connection: a test waits on it for a state of another
    thread that no event reports (the fetcher asleep after an empty claim, a waiter asleep
    in its LISTEN), so that only the fast path it tests can move things on.
    """
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s "
        "AND state = 'idle' AND strpos(query, %s) > 0 AND strpos(query, %s) > 0 "
        "AND (%s::timestamptz IS NULL OR query_start > %s::timestamptz)",
        (f"pgqueue-sync:{role}%", marker, schema, since, since),
    ).fetchone()
    return row is not None and row[0] > 0


def fetcher_asleep(
    conn: psycopg.Connection[Any], schema: str, since: datetime | None = None
) -> bool:
    """The fetcher of the (only) worker on ``schema`` found nothing to claim and sleeps: its
    last statement asked when the next job is due (after ``since``: after an outcome written
    then, whose wake-up is behind it)."""
    return backend_idle_after(conn, "fetch", schema, "min(execute_after)", since)


def waiter_asleep(conn: psycopg.Connection[Any], schema: str) -> bool:
    """A ``wait_for`` on ``schema`` has read the results and sleeps until a NOTIFY."""
    return backend_idle_after(conn, "wait", schema, "DISTINCT ON (l.job_id)")


def listening(conn: psycopg.Connection[Any], schema: str) -> bool:
    """A worker's listener on ``schema`` has run LISTEN on its current connection."""
    return backend_idle_after(conn, "listen", schema, "LISTEN")


def wait_promptly(
    queries: Queries, job_ids: Sequence[int], within: float = 10.0
) -> list[JobResult]:
    """``queries.wait_for(job_ids)``, which must return well within ``within`` seconds.

    ``wait_for`` also re-reads the results every 30 s, and once more when its timeout runs
    out: a bound far below both makes a test fail when the completion NOTIFY no longer wakes
    the waiter, instead of passing late on the re-read.
    """
    start = time.monotonic()
    results = queries.wait_for(job_ids, timeout=within)
    elapsed = time.monotonic() - start
    assert elapsed < within, f"wait_for returned after {elapsed:.1f} s: not woken by NOTIFY"
    return results


class Runner:
    """Runs ``qm.run(...)`` in a thread; ``stop()`` asks it to stop and waits for it."""

    def __init__(self, qm: QueueManager, **kwargs: Any) -> None:
        self.qm = qm
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._target, kwargs=kwargs, daemon=True)

    def _target(self, **kwargs: Any) -> None:
        try:
            self.qm.run(**kwargs)
        except BaseException as exc:
            self.error = exc

    def start(self) -> Runner:
        self.thread.start()
        return self

    def join(self, timeout: float = 30.0) -> None:
        """Wait for run() to return; a hang fails the test (the bound is a guard)."""
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "run() did not return"
        if self.error is not None:
            raise self.error

    def stop(self, timeout: float = 30.0) -> None:
        self.qm.alive = False
        self.join(timeout)


@pytest.fixture
def runner() -> Iterator[Callable[..., Runner]]:
    started: list[Runner] = []

    def start(qm: QueueManager, **kwargs: Any) -> Runner:
        kwargs.setdefault("dequeue_timeout", 5.0)
        r = Runner(qm, **kwargs).start()
        started.append(r)
        return r

    yield start
    for r in started:
        if r.thread.is_alive():
            r.qm.alive = False
            r.thread.join(30)
