"""Producers through PgBouncer in transaction mode: enqueue (INSERT, COPY, dedupe, in the
caller's transaction), a given connection or pool, and wait_for."""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from pgqueue_sync import (
    DuplicateJobError,
    Job,
    JobStatus,
    PsycopgDriver,
    Queries,
    QueueManager,
    Settings,
)
from pgqueue_sync.queries import COPY_THRESHOLD
from tests.pgbouncer.conftest import REPEAT, Make, Recorder, Start, statuses
from tests.pgbouncer.server import PgBouncer


def test_enqueue_insert_and_copy(make_qm: Make, settings: Settings, conn: Any) -> None:
    queries = make_qm().queries
    ids: list[int] = []
    for i in range(REPEAT):
        ids += queries.enqueue(["k"] * 3, [b"a", b"b", b"c"])
        ids += queries.enqueue(["k"] * COPY_THRESHOLD, [b"x"] * COPY_THRESHOLD)
        ids += queries.enqueue(["k"] * 2, dedupe_key=[f"a{i}", f"b{i}"], on_conflict="skip")
    assert len(set(ids)) == len(ids) == REPEAT * (3 + COPY_THRESHOLD + 2)
    assert statuses(conn, settings) == {"queued": len(ids)}


def test_dedupe(make_qm: Make, settings: Settings) -> None:
    queries = make_qm().queries
    for i in range(REPEAT):
        key = f"key-{i}"
        (held,) = queries.enqueue("k", dedupe_key=key)
        with pytest.raises(DuplicateJobError):
            queries.enqueue("k", dedupe_key=key)
        assert queries.enqueue(["k"] * 2, dedupe_key=[key, None], on_conflict="skip")[0] == held


def test_transactional_enqueue_with_the_callers_connection(
    make_qm: Make, bouncer: PgBouncer, settings: Settings, conn: Any
) -> None:
    queries = make_qm().queries
    with psycopg.connect(bouncer.dsn, prepare_threshold=None) as caller:
        for _ in range(REPEAT):
            queries.enqueue(["k"] * 2, [None] * 2, connection=caller)
            queries.enqueue(["k"] * COPY_THRESHOLD, [None] * COPY_THRESHOLD, connection=caller)
            caller.rollback()
        assert statuses(conn, settings) == {}
        queries.enqueue(["k"] * 2, [None] * 2, connection=caller)
        queries.enqueue(["k"] * COPY_THRESHOLD, [None] * COPY_THRESHOLD, connection=caller)
        caller.commit()
    assert statuses(conn, settings) == {"queued": 2 + COPY_THRESHOLD}


def test_a_given_connection_is_used_without_prepared_statements(
    bouncer: PgBouncer, settings: Settings, conn: Any
) -> None:
    with psycopg.connect(bouncer.dsn, autocommit=True) as given:
        queries = Queries(PsycopgDriver(given, transaction_pooling=True), settings)
        queries.install()
        for _ in range(REPEAT):
            queries.enqueue(["k"] * 2, [None] * 2)
    assert statuses(conn, settings) == {"queued": REPEAT * 2}


@pytest.mark.parametrize("kwargs", [{}, {"prepare_threshold": None}], ids=["default", "off"])
def test_a_connection_pool_through_pgbouncer(
    bouncer: PgBouncer, settings: Settings, runner: Start, conn: Any, kwargs: dict[str, Any]
) -> None:
    with ConnectionPool(
        bouncer.dsn, min_size=1, max_size=3, kwargs={"autocommit": True, **kwargs}
    ) as pool:
        qm = QueueManager(PsycopgDriver(pool, transaction_pooling=True), settings=settings)
        qm.queries.install()
        recorder = Recorder(REPEAT * 2)
        qm.entrypoint("k")(recorder)
        for _ in range(REPEAT):
            qm.queries.enqueue(["k"] * 2, [None] * 2)
        runner(qm, workers=2, batch_size=1, mode="drain", dequeue_timeout=0.2).join()
    assert set(recorder.runs.values()) == {1}
    assert len(recorder.runs) == REPEAT * 2
    assert statuses(conn, settings) == {"successful": REPEAT * 2}


class SignallingDriver(PsycopgDriver):
    """Sets ``waiting`` when ``wait_for`` opens its connection."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.waiting = threading.Event()

    def connect(self, role: str) -> psycopg.Connection[Any]:
        conn = super().connect(role)
        if role == "wait":
            self.waiting.set()
        return conn


def test_wait_for_through_pgbouncer_sees_a_job_finish(
    bouncer: PgBouncer, qm: QueueManager, runner: Start
) -> None:
    # The worker is connected directly; only the waiter goes through PgBouncer.
    driver = SignallingDriver(bouncer.dsn, transaction_pooling=True)
    waiter = Queries(driver, qm.settings)

    @qm.entrypoint("gated")
    def gated(job: Job) -> None:
        assert driver.waiting.wait(20)

    ids = qm.queries.enqueue(["gated"] * 2, [None] * 2)
    r = runner(qm, workers=2)
    began = time.monotonic()
    try:
        results = waiter.wait_for(ids, timeout=30)
    finally:
        driver.close()
    waited = time.monotonic() - began
    r.stop()
    assert [res.status for res in results] == [JobStatus.SUCCESSFUL] * 2
    # It polls (at most a second apart): a LISTEN through PgBouncer would hear nothing and
    # return only at the end of its 30 s wait. The bound is a generous guard.
    assert waited < 5, f"wait_for took {waited:.1f} s"
