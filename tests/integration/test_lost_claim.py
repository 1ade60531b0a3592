"""A job claimed again by the worker that holds it runs once: a claim the server forgot in a
crash (claims commit asynchronously), or the worker's own re-claim after its heartbeat
lapsed (the older attempt is superseded)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from pgqueue_sync import (
    Context,
    Job,
    JobStatus,
    ManualClock,
    PsycopgDriver,
    QueueManager,
    Settings,
)
from pgqueue_sync.engine import Worker
from tests.conftest import Runner, eventually
from tests.integration.stepping import stepped_workers

Start = Callable[..., Runner]
RETRY = 30.0


def test_a_job_whose_claim_was_lost_and_made_again_runs_once(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings, runner: Start
) -> None:
    entered = threading.Semaphore(0)
    gate = threading.Event()
    runs = 0

    @qm.entrypoint("once")
    def once(job: Job) -> None:
        nonlocal runs
        runs += 1
        entered.release()
        gate.wait(30)

    [job_id] = qm.queries.enqueue("once", None)
    r = runner(qm, workers=2)
    assert entered.acquire(timeout=20)
    # What the table holds after a crash lost the claim: the job queued again, at the attempt
    # before the claim. The worker, still running it, claims it again at the same attempt.
    table = settings.ident("jobs").as_string(None)
    conn.execute(
        f"UPDATE {table} SET status = 'queued', attempts = attempts - 1, worker_id = NULL"
        " WHERE id = %s",
        (job_id,),
    )
    qm.queries.notify('{"type": "insert"}')

    def picked_again() -> bool:
        row = conn.execute(f"SELECT status::text FROM {table} WHERE id = %s", (job_id,)).fetchone()
        return row is not None and row[0] == "picked"

    assert eventually(picked_again)
    gate.set()
    [result] = qm.queries.wait_for([job_id], timeout=20)
    r.stop()
    assert result.status is JobStatus.SUCCESSFUL
    assert runs == 1
    assert [e.attempts for e in qm.queries.history(job_ids=[job_id])] == [1]


# -- the worker's own re-claim, step by step --------------------------------------------------


@pytest.fixture
def cqm(driver: PsycopgDriver, settings: Settings) -> QueueManager:
    """A queue on a manual clock: time moves only when a test moves it."""
    manager = QueueManager(driver, settings=settings, clock=ManualClock())
    manager.queries.install()
    return manager


@pytest.fixture
def make_worker(cqm: QueueManager) -> Iterator[Callable[[], Worker]]:
    """Workers built as run() builds them, driven by hand: no heartbeat unless a test beats,
    so moving the clock past retry_timer lets a worker re-claim its own jobs."""
    with stepped_workers(cqm, RETRY) as make:
        yield make


def test_an_attempt_superseded_while_it_waited_in_the_buffer_never_runs(
    cqm: QueueManager, make_worker: Callable[[], Worker]
) -> None:
    ran: list[int] = []

    @cqm.entrypoint("e")
    def handler(job: Job) -> None:
        ran.append(job.attempts)

    [job_id] = cqm.queries.enqueue("e", None)
    worker = make_worker()
    worker.prepare()
    assert [j.attempts for j in worker.fetcher.fetch_once()] == [1]
    # Its heartbeat lapses while attempt 1 waits in the buffer: the worker claims it again.
    assert isinstance(cqm.clock, ManualClock)
    cqm.clock.advance(RETRY + 1)
    assert [j.attempts for j in worker.fetcher.fetch_once()] == [2]
    first, second = worker.buffer.take(0), worker.buffer.take(0)
    assert first is not None
    assert second is not None
    assert worker.runner.run_job(first).status is JobStatus.CANCELED
    assert worker.runner.run_job(second).status is JobStatus.SUCCESSFUL
    assert worker.flusher.flush() == {job_id}
    assert ran == [2]  # the superseded attempt never ran its handler
    assert [e.attempts for e in cqm.queries.history(job_ids=[job_id])] == [2]


def test_a_running_attempt_superseded_by_the_workers_own_reclaim_is_told_to_stop(
    cqm: QueueManager, make_worker: Callable[[], Worker]
) -> None:
    started = threading.Event()
    stopped = threading.Event()

    @cqm.entrypoint("e")
    def handler(job: Job, ctx: Context) -> None:
        if job.attempts == 1:
            started.set()
            if ctx.cancelled.wait(10):
                stopped.set()

    [job_id] = cqm.queries.enqueue("e", None)
    worker = make_worker()
    worker.prepare()
    [job] = worker.fetcher.fetch_once()
    assert worker.buffer.take(0) == job
    first = threading.Thread(target=worker.runner.run_job, args=(job,))
    first.start()
    try:
        assert started.wait(10)
        assert isinstance(cqm.clock, ManualClock)
        cqm.clock.advance(RETRY + 1)  # the handler outlived retry_timer without a heartbeat
        [again] = worker.fetcher.fetch_once()
        assert again.attempts == 2
        # The older attempt's handler hears that it is superseded (its outcome would be
        # fenced out anyway): it may stop instead of running on beside the new attempt.
        assert stopped.wait(10)
    finally:
        first.join(30)
    assert worker.buffer.take(0) == again
    assert worker.runner.run_job(again).status is JobStatus.SUCCESSFUL
    assert worker.flusher.flush() == {job_id}
    assert [e.attempts for e in cqm.queries.history(job_ids=[job_id])] == [2]
