from __future__ import annotations

import sys
import threading
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
from psycopg_pool import ConnectionPool

from pgqueue_sync import (
    Context,
    Job,
    JobStatus,
    ManualClock,
    PsycopgDriver,
    QueueManager,
    Settings,
)
from tests.conftest import Runner, engine, eventually

Start = Callable[..., Runner]


def test_reference_example_processes_every_job_exactly_once(
    qm: QueueManager, runner: Start
) -> None:
    n = 1000
    seen: list[int] = []
    lock = threading.Lock()
    all_done = threading.Event()

    @qm.entrypoint("fetch")
    def process_message(job: Job) -> None:
        with lock:
            seen.append(job.id)
            if len(seen) == n:
                all_done.set()

    ids = qm.queries.enqueue(
        ["fetch"] * n, [f"this is from me: {i}".encode() for i in range(n)], [0] * n
    )
    r = runner(qm)
    assert all_done.wait(60)
    r.stop()  # qm.alive = False from another thread; run() returns
    assert sorted(seen) == sorted(ids)
    assert len(set(seen)) == n
    assert qm.queries.queue_size() == []
    log = qm.queries.log(limit=2 * n)
    assert len(log) == n
    assert Counter(e.status for e in log) == {JobStatus.SUCCESSFUL: n}


def test_priorities_run_first_then_fifo(qm: QueueManager, runner: Start) -> None:
    order: list[bytes] = []

    @qm.entrypoint("p")
    def handler(job: Job) -> None:
        order.append(job.payload or b"")

    qm.queries.enqueue(
        ["p"] * 6, [b"low1", b"high1", b"mid", b"low2", b"high2", b"low3"], [0, 9, 5, 0, 9, 0]
    )
    r = runner(qm, workers=1, batch_size=1, mode="drain")
    r.join()
    assert order == [b"high1", b"high2", b"mid", b"low1", b"low2", b"low3"]


def test_failing_handlers_are_recorded_and_the_worker_survives(
    qm: QueueManager, runner: Start
) -> None:
    @qm.entrypoint("raises")
    def raises(job: Job) -> None:
        raise ValueError("boom " + (job.payload or b"").decode())

    @qm.entrypoint("exits")
    def exits(job: Job) -> None:
        sys.exit(3)

    @qm.entrypoint("interrupts")
    def interrupts(job: Job) -> None:
        raise KeyboardInterrupt

    @qm.entrypoint("ok")
    def ok(job: Job) -> None:
        pass

    qm.queries.enqueue(
        ["raises", "exits", "interrupts", "ok", "raises", "ok"],
        [b"1", None, None, None, b"2", None],
    )
    r = runner(qm, workers=2, mode="drain")
    r.join()
    log = {(e.entrypoint, e.status) for e in qm.queries.log()}
    assert log == {
        ("raises", JobStatus.EXCEPTION),
        ("exits", JobStatus.EXCEPTION),
        ("interrupts", JobStatus.EXCEPTION),
        ("ok", JobStatus.SUCCESSFUL),
    }
    tracebacks = {e.entrypoint: e.traceback or "" for e in qm.queries.log(status="exception")}
    assert "ValueError: boom" in tracebacks["raises"]
    assert "SystemExit: 3" in tracebacks["exits"]
    assert "KeyboardInterrupt" in tracebacks["interrupts"]
    assert len(qm.queries.log()) == 6
    assert qm.last_stats is not None
    assert (qm.last_stats.succeeded, qm.last_stats.failed) == (2, 4)


def test_handlers_only_get_their_own_entrypoints(
    qm: QueueManager, driver: PsycopgDriver, settings: Settings, runner: Start
) -> None:
    @qm.entrypoint("mine")
    def mine(job: Job) -> None:
        pass

    producer = QueueManager(driver, settings=settings, check_entrypoints=False)
    producer.queries.enqueue(["mine", "theirs", "mine"], [None] * 3)
    runner(qm, mode="drain").join()
    sizes = {(s.entrypoint, s.status): s.count for s in qm.queries.queue_size()}
    assert sizes == {("theirs", JobStatus.QUEUED): 1}


def test_a_job_left_picked_by_a_dead_worker_is_run_again(
    driver: PsycopgDriver, settings: Settings, runner: Start
) -> None:
    clock = ManualClock()
    qm = QueueManager(driver, settings=settings, clock=clock)
    qm.queries.install()
    ran: list[tuple[int, int]] = []

    @qm.entrypoint("orphan")
    def handler(job: Job) -> None:
        ran.append((job.id, job.attempts))

    [job_id] = qm.queries.enqueue("orphan", b"")
    engine(qm).dequeue(1, ["orphan"], uuid.uuid4(), timedelta(seconds=30))  # then "dies"
    clock.advance(timedelta(seconds=31))
    runner(qm, retry_timer=timedelta(seconds=30), mode="drain").join()
    assert ran == [(job_id, 2)]
    [entry] = qm.queries.log(job_ids=[job_id])
    assert (entry.status, entry.attempts) == (JobStatus.SUCCESSFUL, 2)


def test_drain_mode_returns_when_nothing_is_due(qm: QueueManager, runner: Start) -> None:
    done: list[int] = []

    @qm.entrypoint("d")
    def handler(job: Job) -> None:
        done.append(job.id)

    qm.queries.enqueue(["d"] * 50, [None] * 50)
    qm.queries.enqueue("d", None, execute_after=timedelta(hours=1))
    runner(qm, mode="drain", batch_size=7).join()
    assert len(done) == 50
    assert [(s.status, s.count) for s in qm.queries.queue_size()] == [(JobStatus.QUEUED, 1)]


def test_deferred_jobs_run_when_due_without_a_notify(qm: QueueManager, runner: Start) -> None:
    ran = threading.Event()

    @qm.entrypoint("later")
    def handler(job: Job) -> None:
        ran.set()

    # The worker sleeps until the earliest of them is due.
    qm.queries.enqueue(
        ["later", "later"],
        [None, None],
        execute_after=[timedelta(hours=1), timedelta(seconds=1)],
    )
    r = runner(qm, dequeue_timeout=3600, retry_timer=None)
    assert ran.wait(20), "the worker did not wake for the deferred job"
    r.stop()


def _roles(conn: psycopg.Connection[Any], worker_id: uuid.UUID) -> Counter[str]:
    rows = conn.execute(
        "SELECT application_name FROM pg_stat_activity WHERE application_name LIKE %s",
        (f"pgqueue-sync:%:{worker_id.hex[:8]}",),
    ).fetchall()
    return Counter(row[0].split(":")[1] for row in rows)


@pytest.mark.parametrize("kind", ["autocommit", "transactional", "pool", "dsn"])
def test_every_kind_of_driver_source_works_and_worker_connections_close(
    kind: str, dsn: str, settings: Settings, conn: psycopg.Connection[Any], runner: Start
) -> None:
    closers: list[Callable[[], None]] = []
    if kind in ("autocommit", "transactional"):
        source: Any = psycopg.connect(dsn, autocommit=kind == "autocommit")
        closers.append(source.close)
    elif kind == "pool":
        source = ConnectionPool(dsn, min_size=1, max_size=2, open=True)
        closers.append(source.close)
    else:
        source = dsn
    driver = PsycopgDriver(source)
    closers.append(driver.close)
    try:
        qm = QueueManager(driver, settings=settings)
        qm.queries.install()
        seen = threading.Event()
        roles: list[Counter[str]] = []
        workers: list[uuid.UUID] = []

        @qm.entrypoint("k")
        def handler(job: Job, ctx: Context) -> None:
            workers.append(ctx.worker_id)
            roles.append(_roles(conn, ctx.worker_id))
            seen.set()

        qm.queries.enqueue("k", b"")
        r = runner(qm)
        assert seen.wait(30)
        r.stop()
        assert roles[0] == {"listen": 1, "fetch": 1, "complete": 1}
        assert eventually(lambda: _roles(conn, workers[0]) == Counter())
        assert [e.status for e in qm.queries.log()] == [JobStatus.SUCCESSFUL]
    finally:
        for close in closers:
            close()


def test_handlers_can_take_a_context(qm: QueueManager, runner: Start) -> None:
    seen: list[tuple[int, uuid.UUID]] = []

    @qm.entrypoint("ctx")
    def handler(job: Job, ctx: Any) -> None:
        seen.append((ctx.job.id, ctx.worker_id))

    [job_id] = qm.queries.enqueue("ctx", None)
    runner(qm, mode="drain").join()
    assert [s[0] for s in seen] == [job_id]
    [entry] = qm.queries.log()
    assert entry.worker_id == seen[0][1]


def test_bytes_results_are_kept_in_the_log(qm: QueueManager, runner: Start) -> None:
    @qm.entrypoint("r")
    def handler(job: Job) -> bytes:
        return (job.payload or b"")[::-1]

    [job_id] = qm.queries.enqueue("r", b"abc")
    runner(qm, mode="drain").join()
    [entry] = qm.queries.log(job_ids=[job_id])
    assert entry.result == b"cba"


def test_drain_runs_every_job_of_an_entrypoint_at_its_concurrency_limit(
    qm: QueueManager,
) -> None:
    """Drain mode does not stop while a job of a limited entrypoint is due: the finished
    job that frees the slot may unblock the entrypoint while the fetcher's claim skips it."""
    ran: list[int] = []

    @qm.entrypoint("one_at_a_time", concurrency_limit=1)
    def handler(job: Job) -> None:
        ran.append(job.id)

    @qm.entrypoint("other")
    def other(job: Job) -> None:
        pass

    for _ in range(20):  # a race: most rounds lost it before the fix
        ids = qm.queries.enqueue(["one_at_a_time"] * 3, [None] * 3)
        qm.run(mode="drain", dequeue_timeout=1.0, workers=4)
        assert ran[-3:] == ids


def test_a_handler_receives_its_row_as_the_claim_left_it(
    qm: QueueManager, runner: Start, conn: psycopg.Connection[Any]
) -> None:
    """The claim reads back only what it did not set itself (Job.from_claim fills in the
    status, heartbeat, worker and started), its time from one row only and a due time equal
    to the creation as NULL: each job a handler gets is its row all the same, in a claim of
    several jobs, due when enqueued or deferred."""
    seen: list[tuple[Job, Job]] = []
    gate = threading.Event()
    lock = threading.Lock()

    @qm.entrypoint("look")
    def look(job: Job) -> None:
        (row,) = qm.queries.get_jobs([job.id])  # read while the handler runs: still picked
        with lock:
            seen.append((job, row))
            if len(seen) == 3:
                gate.set()

    (job_id,) = qm.queries.enqueue(
        "look", b"\x00payload", priority=3, dedupe_key="k-1", headers={"tenant": "t"}
    )
    due = datetime.now(timezone.utc) - timedelta(minutes=5)
    past = qm.queries.enqueue(["look"] * 2, [None, b"x"], execute_after=due)
    runner(qm)
    assert gate.wait(10)
    job = next(job for job, _ in seen if job.id == job_id)
    assert job.status is JobStatus.PICKED
    assert job.worker_id is not None
    assert job.heartbeat == job.updated
    assert job.execute_after == job.created
    for claimed, row in seen:
        assert claimed == row  # every field, the datetimes as instants
    assert {job.id for job, _ in seen} == {job_id, *past}
    assert all(job.execute_after < job.created for job, _ in seen if job.id in past)
    # In UTC whatever the server's TimeZone (datetime.timezone.utc: psycopg's fast decode).
    assert job.created.tzinfo is timezone.utc
