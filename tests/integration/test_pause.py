"""Paused entrypoints: state in the database, read by the claim; a NOTIFY only hints."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgqueue_sync import Job, JobStatus, QueueManager, Settings
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.store import Store
from pgqueue_sync.errors import ConnectionLostError
from tests.conftest import Runner, eventually
from tests.integration.test_stalls import statuses
from tests.integration.test_workers_registry import Seen

Start = Callable[..., Runner]


def drain(qm: QueueManager, **kwargs: Any) -> None:
    qm.run(mode="drain", dequeue_timeout=1.0, **kwargs)


def test_a_paused_entrypoint_is_not_claimed_until_resumed(qm: QueueManager) -> None:
    ran: list[str] = []

    for name, limit in (("a", None), ("b", None), ("c", 1)):

        @qm.entrypoint(name, concurrency_limit=limit)
        def handler(job: Job) -> None:
            ran.append(job.entrypoint)

    qm.queries.pause(["b", "c"])
    ids = qm.queries.enqueue(["a", "b", "c"] * 3, [None] * 9)  # enqueue still works
    drain(qm)  # the queue counts as drained: nothing that may run is due
    assert sorted(ran) == ["a"] * 3
    left = qm.queries.get_jobs(ids)
    assert {(j.entrypoint, j.status, j.attempts) for j in left} == {
        ("b", JobStatus.QUEUED, 0),
        ("c", JobStatus.QUEUED, 0),
    }
    assert qm.queries.resume("b") == ["b"]
    drain(qm)
    assert sorted(ran) == ["a"] * 3 + ["b"] * 3
    qm.queries.resume("c")
    drain(qm)
    assert sorted(ran) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3


def test_pausing_gives_back_buffered_jobs_and_lets_the_running_one_finish(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings, runner: Start
) -> None:
    entered = threading.Event()
    gate = threading.Event()
    started: list[int] = []

    @qm.entrypoint("long")
    def long(job: Job) -> None:
        started.append(job.id)
        entered.set()
        gate.wait(30)

    @qm.entrypoint("other")
    def other(job: Job) -> None:
        pass

    # One thread, one claim of four: one job runs, three wait in the buffer.
    ids = qm.queries.enqueue(["long"] * 4, [None] * 4)
    r = runner(qm, workers=1, batch_size=4, retry_timer=60, heartbeat_interval=10)
    try:
        assert entered.wait(20)
        assert statuses(conn, settings) == dict.fromkeys(ids, "picked")
        qm.queries.pause("long")
        # The hint makes the worker read the table and give the three back, unstarted.
        assert eventually(lambda: sorted(statuses(conn, settings).values()).count("queued") == 3)
        back = [j for j in qm.queries.get_jobs(ids) if j.status is JobStatus.QUEUED]
        assert [j.attempts for j in back] == [0, 0, 0]
        gate.set()
        [first] = qm.queries.wait_for([started[0]], timeout=20)
        assert first.status is JobStatus.SUCCESSFUL
        # Nothing of it starts while paused; a job of another entrypoint shows the worker
        # is claiming (and has seen every event sent before it).
        [marker] = qm.queries.enqueue("other", None)
        qm.queries.wait_for([marker], timeout=20)
        assert started == [ids[0]]
        qm.queries.resume("long")
        results = qm.queries.wait_for(ids, timeout=20)
        assert [res.status for res in results] == [JobStatus.SUCCESSFUL] * 4
        assert sorted(started) == ids
    finally:
        gate.set()
        r.stop()
    assert qm.last_stats is not None
    assert qm.last_stats.released == 3


def test_a_job_of_a_paused_entrypoint_that_reaches_a_thread_is_given_back(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    """A claim made just before a pause, its job still buffered when the worker learns of
    the pause: the job goes back unstarted (the table is read again to be sure)."""
    ran: list[int] = []

    @qm.entrypoint("p")
    def p(job: Job) -> None:
        ran.append(job.id)

    class KnowsOfThePause(Worker):
        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            claim = self.fetch_store.dequeue

            def claim_then_pause(*args: Any) -> list[Job]:
                jobs = claim(*args)
                if jobs:  # paused after the claim, known before the job is buffered
                    qm.queries.pause("p")
                    self.presence.paused = frozenset({"p"})
                    self.shutdown_event.set()
                return jobs

            self.fetch_store.dequeue = claim_then_pause  # type: ignore[method-assign,assignment]

    qm.worker_class = KnowsOfThePause
    [job_id] = qm.queries.enqueue("p", None)
    drain(qm, workers=1)
    assert ran == []
    [job] = qm.queries.get_jobs([job_id])
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)


def test_a_pause_hint_whose_read_fails_is_retried_without_spinning(
    qm: QueueManager, runner: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: list[float] = []
    failing = threading.Event()
    failing.set()
    real = Store.paused_of

    def paused_of(self: Store, entrypoints: Any) -> frozenset[str]:
        reads.append(time.monotonic())
        if failing.is_set():
            raise ConnectionLostError("the database went away")
        return real(self, entrypoints)

    monkeypatch.setattr(Store, "paused_of", paused_of)
    seen = Seen()
    qm.add_hooks(seen)

    @qm.entrypoint("a")
    def a(job: Job) -> None:
        pass

    r = runner(qm, workers=1, retry_timer=60, heartbeat_interval=2)
    try:
        [job_id] = qm.queries.enqueue("a", None)
        qm.queries.wait_for([job_id], timeout=20)
        qm.queries.pause("a")  # the hint: the worker reads the table, which fails
        assert eventually(lambda: len(reads) >= 1)
        time.sleep(1.5)  # the window in which a spinning flusher reads thousands of times
        assert len(reads) <= 4
        failing.clear()  # the database is back: a later try (or the heartbeat) reads it
        assert eventually(lambda: seen.worker is not None and bool(seen.worker.presence.paused))
    finally:
        r.stop()
