"""The workers registry: a row per running worker, refreshed with its heartbeat, removed at
a clean stop, shown as lost after retry_timer without a heartbeat, forgotten later."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from pgqueue_sync import Job, QueueManager, Settings, __version__
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.hooks import WorkerHooks
from tests.conftest import Runner, eventually

Start = Callable[..., Runner]


class Seen(WorkerHooks):
    """The worker of the last run started (``qm.add_hooks(seen)``)."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def worker_started(self, worker: Worker) -> None:
        self.worker = worker


def test_a_running_worker_is_a_row_until_it_stops(qm: QueueManager, runner: Start) -> None:
    gate = threading.Event()
    entered = threading.Event()

    @qm.entrypoint("work")
    def work(job: Job) -> None:
        if job.payload == b"wait":
            entered.set()
            gate.wait(30)

    @qm.entrypoint("other")
    def other(job: Job) -> None:
        pass

    seen = Seen()
    qm.add_hooks(seen)
    done = qm.queries.enqueue(["work"] * 3, [None] * 3)
    r = runner(qm, workers=3, retry_timer=2, heartbeat_interval=0.2)
    try:
        qm.queries.wait_for(done, timeout=20)
        qm.queries.enqueue("work", b"wait")
        assert entered.wait(20)
        assert eventually(lambda: [w.busy for w in qm.queries.workers()] == [1])
        [worker] = qm.queries.workers()
        engine = seen.worker
        assert engine is not None
        assert worker.id == engine.id
        assert (worker.host, worker.pid, worker.version) == (
            socket.gethostname(),
            os.getpid(),
            __version__,
        )
        assert (worker.entrypoints, worker.threads) == (("other", "work"), 3)
        assert (worker.jobs_done, worker.jobs_failed, worker.lost) == (3, 0, False)
        assert worker.heartbeat_at >= worker.started_at
        # Each heartbeat refreshes the row: its heartbeat moves on.
        beat = worker.heartbeat_at
        assert eventually(lambda: [w.heartbeat_at > beat for w in qm.queries.workers()] == [True])
        assert worker.options is not None
        assert worker.options["retry_timer"] == 2.0
    finally:
        gate.set()
        r.stop()
    assert qm.queries.workers() == []  # removed at a clean stop


def test_a_worker_without_heartbeat_is_lost_then_forgotten(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings, runner: Start
) -> None:
    table = settings.ident("workers")
    insert = sql.SQL(
        "INSERT INTO {} (id, host, pid, started, heartbeat, entrypoints, threads, version, "
        "lost_after) VALUES (%s, 'gone', 1, now() - %s::interval, now() - %s::interval, "
        "'{{a}}', 4, '0', '1 minute')"
    ).format(table)
    recent, ancient = uuid.uuid4(), uuid.uuid4()
    conn.execute(insert, (recent, "10 minutes", "2 minutes"))  # lost 1 minute ago
    conn.execute(insert, (ancient, "3 hours", "2 hours"))  # lost long ago
    rows = {w.id: w for w in qm.queries.workers()}
    assert (rows[recent].lost, rows[ancient].lost) == (True, True)
    assert 110 < rows[recent].heartbeat_age_seconds < 130

    @qm.entrypoint("a")
    def a(job: Job) -> None:
        pass

    r = runner(qm, workers=1, retry_timer=2, heartbeat_interval=0.2)
    try:
        # A live worker's heartbeat forgets rows lost for more than an hour.
        assert eventually(lambda: ancient not in {w.id for w in qm.queries.workers()})
        live = [w for w in qm.queries.workers() if not w.lost]
        assert len(live) == 1
        assert recent in {w.id for w in qm.queries.workers()}
    finally:
        r.stop()
    assert [w.id for w in qm.queries.workers()] == [recent]
