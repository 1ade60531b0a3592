"""Nothing stalls a worker: handlers stuck past their timeout, forged NOTIFYs, a dropped
schema."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgqueue_sync import (
    Context,
    Job,
    JobStatus,
    PsycopgDriver,
    QueueManager,
    SchemaNotInstalledError,
    Settings,
)
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.hooks import WorkerHooks
from pgqueue_sync.engine.runner import TAKE_TIMEOUT
from tests.conftest import Runner, eventually

Start = Callable[..., Runner]


class SeenWorker(WorkerHooks):
    """The worker of the last run started (``qm.add_hooks(seen)``)."""

    def __init__(self) -> None:
        self.worker: Worker | None = None

    def worker_started(self, worker: Worker) -> None:
        self.worker = worker


def statuses(conn: psycopg.Connection[Any], settings: Settings) -> dict[int, str]:
    table = settings.ident("jobs").as_string(None)
    return dict(conn.execute(f"SELECT id, status::text FROM {table}").fetchall())


# -- handlers stuck past their timeout -------------------------------------------------------


def test_run_returns_at_once_when_every_stuck_handler_is_past_its_timeout(
    qm: QueueManager, runner: Start
) -> None:
    gate = threading.Event()
    entered = threading.Semaphore(0)

    @qm.entrypoint("sleepy", timeout=0.3)
    def sleepy(job: Job) -> None:
        entered.release()
        gate.wait(60)

    ids = qm.queries.enqueue(["sleepy"] * 2, [None] * 2)
    r = runner(qm, workers=1)
    try:
        results = qm.queries.wait_for(ids, timeout=20)
        assert [res.status for res in results] == [JobStatus.EXCEPTION] * 2
        assert entered.acquire(timeout=5)
        assert entered.acquire(timeout=5)
        stopped = time.monotonic()
        r.stop()  # no shutdown_timeout: still, handlers past their timeout are not waited for
        assert time.monotonic() - stopped < 2.0
    finally:
        gate.set()


def test_a_worker_whose_threads_are_all_stuck_holds_no_job_it_cannot_start(
    qm: QueueManager,
    driver: PsycopgDriver,
    dsn: str,
    settings: Settings,
    conn: psycopg.Connection[Any],
    runner: Start,
) -> None:
    gate = threading.Event()
    innocent_ran_by: list[str] = []

    def register(manager: QueueManager, name: str) -> None:
        @manager.entrypoint("hang", timeout=0.3)
        def hang(job: Job) -> None:
            gate.wait(60)

        @manager.entrypoint("innocent")
        def innocent(job: Job) -> None:
            innocent_ran_by.append(name)

    register(qm, "first")
    hung = qm.queries.enqueue(["hang"] * 2, [None] * 2, priority=1)
    innocents = qm.queries.enqueue(["innocent"] * 5, [None] * 5)
    # One thread, a batch that claims all 7: the first hang is replaced by a new thread, the
    # second hang leaves none (at most `workers` stuck threads are replaced).
    first = runner(qm, workers=1, batch_size=10)
    try:
        assert [r.status for r in qm.queries.wait_for(hung, timeout=20)] == [
            JobStatus.EXCEPTION
        ] * 2
        # The five innocent jobs go back to the queue at once, unstarted (no attempt used) ...
        assert eventually(
            lambda: all(statuses(conn, settings).get(i) == "queued" for i in innocents)
        )
        assert {job.attempts for job in qm.queries.get_jobs(innocents)} == {0}
        # ... and the stuck worker claims none of them again: another worker runs them.
        with psycopg.connect(dsn, autocommit=True) as other_conn:
            other = QueueManager(PsycopgDriver(other_conn), settings=settings)
            register(other, "second")
            second = runner(other, workers=2)
            results = qm.queries.wait_for(innocents, timeout=20)
            assert {r.status for r in results} == {JobStatus.SUCCESSFUL}
            assert innocent_ran_by == ["second"] * 5
            second.stop()
        stopped = time.monotonic()
        first.stop()
        assert time.monotonic() - stopped < 2.0
    finally:
        gate.set()


@pytest.mark.parametrize("buffer_size", [100, 4])
def test_jobs_behind_a_short_handler_that_runs_long_are_not_held_back(
    buffer_size: int, qm: QueueManager, runner: Start
) -> None:
    """While handlers return at once, a claim wakes a single thread (the awake ones take the
    rest); when one of them runs long instead, the jobs behind it wake the other threads
    within a few milliseconds, not when it returns nor when an idle thread looks again.

    With room to spare the idle worker's listener claims the jobs and, the fetch loop
    asleep, nudges the threads itself; in a buffer that one claim fills, the fetch loop
    waits for room and nudges them."""
    seen = SeenWorker()
    qm.add_hooks(seen)
    gate = threading.Event()
    quick_done = threading.Semaphore(0)

    @qm.entrypoint("hold")
    def hold(job: Job) -> None:
        gate.wait(60)

    @qm.entrypoint("quick")
    def quick(job: Job) -> None:
        quick_done.release()

    @qm.entrypoint("long")
    def long(job: Job) -> None:
        gate.wait(60)

    qm.queries.enqueue("hold", None)
    r = runner(qm, workers=5, batch_size=4, buffer_size=buffer_size)
    try:
        warmup = qm.queries.enqueue(["quick"] * 30, [None] * 30)
        qm.queries.wait_for(warmup, timeout=20)
        for _ in warmup:
            assert quick_done.acquire(timeout=5)
        assert seen.worker is not None
        assert seen.worker.buffer.short_jobs()
        # One claim: the long job first (higher priority), three quick ones behind it.
        qm.queries.enqueue(["long", "quick", "quick", "quick"], [None] * 4, [10, 0, 0, 0])
        # Half the idle threads' own timeout (TAKE_TIMEOUT), after which they would look at
        # the buffer anyway: the quick jobs start long before.
        for _ in range(3):
            assert quick_done.acquire(timeout=TAKE_TIMEOUT / 2)
    finally:
        gate.set()
    r.stop()


# -- forged NOTIFY ---------------------------------------------------------------------------


@pytest.fixture
def stranger(dsn: str, settings: Settings) -> Iterator[psycopg.Connection[Any]]:
    """A connection of a role with no grant at all on the queue."""
    role = f"stranger_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute(f'CREATE ROLE "{role}" LOGIN')
        try:
            params = psycopg.conninfo.conninfo_to_dict(dsn)
            params["user"] = role
            params.pop("password", None)
            with psycopg.connect(psycopg.conninfo.make_conninfo("", **params)) as conn:
                conn.autocommit = True
                yield conn
        finally:
            admin.execute(f'DROP OWNED BY "{role}"')
            admin.execute(f'DROP ROLE "{role}"')


def test_a_forged_notify_changes_no_job(
    qm: QueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: Start,
    stranger: psycopg.Connection[Any],
) -> None:
    entered = threading.Event()
    gate = threading.Event()
    seen_cancelled: list[int] = []

    @qm.entrypoint("long")
    def long(job: Job, ctx: Context) -> None:
        if job.payload == b"first":
            entered.set()
        gate.wait(30)
        if ctx.is_cancelled:
            seen_cancelled.append(job.id)
        ctx.check()

    # One running job and three buffered behind it (one thread, one claim of four).
    ids = qm.queries.enqueue(["long"] * 4, [b"first", None, None, None])
    r = runner(qm, workers=1, batch_size=4, retry_timer=60, heartbeat_interval=10)
    assert entered.wait(20)
    assert statuses(conn, settings) == dict.fromkeys(ids, "picked")
    # The stranger cannot touch the table ...
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        stranger.execute(f"SELECT 1 FROM {settings.ident('jobs').as_string(None)}")
    # ... but NOTIFY needs no privilege. Every shape the worker understands:
    payloads = [
        {"type": "cancel", "ids": ids},
        {"type": "cancel", "ids": [str(i) for i in ids]},
        {"type": "done", "ids": ids, "entrypoints": ["long"]},
        {"type": "insert"},
        {"type": "requeue"},
        {"type": "probe", "worker": "x"},
        {"type": "pause", "entrypoints": ["long"]},
        {"type": "pause", "entrypoints": "long"},
        {"type": "resume", "entrypoints": ["long"]},
        {"type": "stop"},
        {"ids": ids},
    ]
    for payload in [*payloads, "not json", "[1, 2]", ""]:
        text = payload if isinstance(payload, str) else json.dumps(payload)
        stranger.execute("SELECT pg_notify(%s, %s)", (settings.channel, text))
    # A NOTIFY from the queue itself, sent after the forged ones, shows they were all seen.
    qm.queries.notify(json.dumps({"type": "insert"}))
    [marker] = qm.queries.enqueue("long", None)
    assert eventually(lambda: statuses(conn, settings).get(marker) == "picked")
    # The forged pause gave nothing back: the three buffered jobs are still this worker's,
    # at their first attempt.
    held = qm.queries.get_jobs(ids)
    assert [(j.status, j.attempts, j.worker_id) for j in held] == [
        (JobStatus.PICKED, 1, held[0].worker_id)
    ] * 4
    gate.set()
    results = qm.queries.wait_for([*ids, marker], timeout=20)
    r.stop()
    assert [res.status for res in results] == [JobStatus.SUCCESSFUL] * 5
    assert seen_cancelled == []
    assert qm.last_stats is not None
    assert qm.last_stats.released == 0
    assert [e.attempts for e in qm.queries.history(job_ids=ids)] == [1] * 4


def test_a_forged_resume_does_not_resume_a_paused_entrypoint(
    qm: QueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: Start,
    stranger: psycopg.Connection[Any],
) -> None:
    ran: list[str] = []

    @qm.entrypoint("paused")
    def paused(job: Job) -> None:
        ran.append("paused")

    @qm.entrypoint("open")
    def open_(job: Job) -> None:
        ran.append("open")

    qm.queries.pause("paused")
    held_back = qm.queries.enqueue(["paused"] * 3, [None] * 3)
    r = runner(qm, workers=2, retry_timer=60, heartbeat_interval=10)
    for payload in (
        {"type": "resume", "entrypoints": ["paused"]},
        {"type": "resume"},
        {"type": "pause", "entrypoints": []},
        {"type": "insert"},
    ):
        stranger.execute("SELECT pg_notify(%s, %s)", (settings.channel, json.dumps(payload)))
    # Sent after the forged events: once it has run, the worker has seen them all.
    [marker] = qm.queries.enqueue("open", None)
    qm.queries.wait_for([marker], timeout=20)
    assert statuses(conn, settings) == dict.fromkeys(held_back, "queued")
    assert ran == ["open"]
    qm.queries.resume("paused")
    results = qm.queries.wait_for(held_back, timeout=20)
    r.stop()
    assert [res.status for res in results] == [JobStatus.SUCCESSFUL] * 3


def test_a_real_cancel_reaches_a_running_job_through_the_table(
    qm: QueueManager, runner: Start
) -> None:
    entered = threading.Event()

    @qm.entrypoint("long")
    def long(job: Job, ctx: Context) -> None:
        entered.set()
        ctx.cancelled.wait(30)
        ctx.check()

    [job_id] = qm.queries.enqueue("long", None)
    # Heartbeats far away: only the NOTIFY, checked against the table, can cancel in time.
    r = runner(qm, workers=1, retry_timer=600, heartbeat_interval=60)
    assert entered.wait(20)
    started = time.monotonic()
    assert qm.queries.cancel([job_id]).requested == [job_id]
    [result] = qm.queries.wait_for([job_id], timeout=20)
    assert time.monotonic() - started < 10
    r.stop()
    assert result.status is JobStatus.CANCELED


# -- the queue dropped under a running worker ------------------------------------------------


@pytest.mark.parametrize("busy", [True, False], ids=["busy", "idle"])
def test_a_worker_stops_with_a_typed_error_when_its_queue_is_dropped(
    qm: QueueManager, runner: Start, busy: bool
) -> None:
    gate = threading.Event()
    entered = threading.Event()

    @qm.entrypoint("work")
    def work(job: Job) -> None:
        entered.set()
        if job.payload != b"quick":
            gate.wait(30)

    if busy:
        qm.queries.enqueue(["work"] * 3, [None] * 3)
    else:
        # One quick job, finished: the worker is up, and idle once it is done.
        [quick] = qm.queries.enqueue("work", b"quick")
    # Idle, the worker claims nothing for dequeue_timeout: its periodic probe notices.
    r = runner(qm, workers=2, retry_timer=None, heartbeat_interval=0.5, dequeue_timeout=30)
    try:
        if busy:
            assert entered.wait(20)
        else:
            qm.queries.wait_for([quick], timeout=20)
        dropped = time.monotonic()
        qm.queries.uninstall()
        gate.set()
        r.thread.join(10)
        assert not r.thread.is_alive(), "run() did not return after its queue was dropped"
        assert time.monotonic() - dropped < 5
        assert isinstance(r.error, SchemaNotInstalledError)
        assert "pgq-sync install" in str(r.error)
    finally:
        gate.set()
