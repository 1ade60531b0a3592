"""Fast paths tested without their fallbacks.

Where a fast mechanism has a slow fallback (NOTIFY and the periodic re-query, the cancel
NOTIFY and the heartbeat, the listener and the idle timeout), a test that leaves the fallback
within reach passes on the fallback when the fast path breaks. Each test here puts the
fallback far out of reach (a long heartbeat interval, retry_timer, dequeue_timeout or
re-query interval) and asserts within a bound far below it, waiting on events.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgqueue_sync import Context, Job, JobResult, JobStatus, QueueManager, Settings
from pgqueue_sync.models import Outcome
from tests.conftest import Runner, engine, eventually, fetcher_asleep, wait_promptly, waiter_asleep

Start = Callable[..., Runner]

# Bound on every wait in these tests: far below each fallback they disable (>= 30 s).
FAST = 10.0
# How long a blocked handler waits before giving up (reached only when a test fails).
GUARD = 30.0


def test_a_cancel_reaches_a_running_handler_by_notify(qm: QueueManager, runner: Start) -> None:
    started = threading.Event()
    saw_cancel = threading.Event()

    @qm.entrypoint("long")
    def long(job: Job, ctx: Context) -> None:
        started.set()
        if ctx.cancelled.wait(GUARD):
            saw_cancel.set()
        ctx.check()

    [job_id] = qm.queries.enqueue("long", None)
    # The heartbeat also carries cancel requests: first one in 10 minutes.
    r = runner(qm, retry_timer=3600, heartbeat_interval=600)
    assert started.wait(GUARD)
    assert qm.queries.cancel([job_id]).requested == [job_id]
    assert saw_cancel.wait(FAST), "the cancel NOTIFY did not reach the running handler"
    [final] = wait_promptly(qm.queries, [job_id], within=FAST)
    assert final.status is JobStatus.CANCELED
    r.stop()


def test_wait_for_is_woken_by_the_completion_notify(
    qm: QueueManager, runner: Start, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    release = threading.Event()

    @qm.entrypoint("slow")
    def slow(job: Job) -> str:
        release.wait(GUARD)
        return "done"

    [job_id] = qm.queries.enqueue("slow", None)
    r = runner(qm)
    results: list[JobResult] = []
    returned = threading.Event()

    def wait() -> None:
        # A timeout far beyond the test's bound: wait_for re-reads every 30 s otherwise.
        results.extend(qm.queries.wait_for([job_id], timeout=120))
        returned.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    # The waiter has read the results (none yet) and sleeps on its LISTEN: only the NOTIFY
    # of the outcome can wake it before its re-read.
    assert eventually(lambda: waiter_asleep(conn, settings.schema), FAST)
    assert not returned.is_set()
    finished = time.monotonic()
    release.set()
    assert returned.wait(FAST), "wait_for was not woken by the completion NOTIFY"
    assert time.monotonic() - finished < FAST
    assert [(res.status, res.value) for res in results] == [(JobStatus.SUCCESSFUL, "done")]
    waiter.join(GUARD)
    r.stop()


def test_the_flusher_refreshes_the_heartbeat_of_running_and_buffered_jobs(
    qm: QueueManager, runner: Start, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    started = threading.Event()
    release = threading.Event()

    @qm.entrypoint("hold")
    def hold(job: Job) -> None:
        started.set()
        release.wait(GUARD)

    ids = qm.queries.enqueue(["hold", "hold"], [None, None])
    # One thread: one job runs, the other waits in the buffer. retry_timer far away, so no
    # claim (which also stamps the heartbeat) happens meanwhile.
    r = runner(qm, workers=1, batch_size=2, retry_timer=3600, heartbeat_interval=0.05)
    assert started.wait(GUARD)
    table = settings.ident("jobs").as_string(conn)

    def refreshed() -> set[int]:
        # A claim stamps heartbeat and updated alike; only a heartbeat moves one alone.
        rows = conn.execute(
            f"SELECT id FROM {table} WHERE status = 'picked' AND heartbeat > updated"
        ).fetchall()
        return {row[0] for row in rows}

    assert eventually(lambda: refreshed() == set(ids), FAST), (
        f"heartbeats refreshed only {refreshed()} of {ids}"
    )
    release.set()
    assert [res.status for res in wait_promptly(qm.queries, ids, within=FAST)] == [
        JobStatus.SUCCESSFUL
    ] * 2
    r.stop()


def test_an_idle_worker_is_woken_by_the_insert_notify(
    qm: QueueManager, runner: Start, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    ran = threading.Event()

    @qm.entrypoint("wake")
    def handler(job: Job) -> None:
        ran.set()

    # Poll timers far beyond the test's patience: only NOTIFY can wake the worker in time.
    r = runner(qm, dequeue_timeout=3600, retry_timer=None)
    assert eventually(lambda: fetcher_asleep(conn, settings.schema), FAST)
    qm.queries.enqueue("wake", None)
    assert ran.wait(FAST), "the idle worker was not woken by the insert NOTIFY"
    r.stop()


@pytest.mark.parametrize("how", ["released", "retried", "requeued"])
def test_an_idle_worker_is_woken_when_a_job_goes_back_to_the_queue(
    how: str, qm: QueueManager, runner: Start, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    ran = threading.Event()

    @qm.entrypoint("back")
    def back(job: Job) -> None:
        ran.set()

    [job_id] = qm.queries.enqueue("back", None)
    elsewhere = uuid.uuid4()  # another worker holds the job
    [job] = engine(qm).dequeue(1, ["back"], elsewhere)
    if how == "requeued":
        engine(qm).complete(elsewhere, [Outcome(job_id, job.attempts, JobStatus.FAILED, 0.0)])
    r = runner(qm, dequeue_timeout=3600, retry_timer=None)
    assert eventually(lambda: fetcher_asleep(conn, settings.schema), FAST)
    if how == "released":
        assert engine(qm).release(elsewhere, {job_id}, {job_id}) == {job_id}
    elif how == "retried":
        retry = Outcome(job_id, job.attempts, JobStatus.QUEUED, 0.0, delay=0.0)
        assert engine(qm).complete(elsewhere, [retry]).retried == {job_id}
    else:
        assert qm.queries.requeue([job_id]) == [job_id]
    assert ran.wait(FAST), f"the idle worker was not woken when the job was {how}"
    r.stop()


def test_a_worker_held_at_a_global_limit_is_freed_by_the_done_notify(
    qm: QueueManager, runner: Start, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    ran = threading.Event()

    @qm.entrypoint("one", concurrency_limit=1)
    def one(job: Job) -> None:
        ran.set()

    @qm.entrypoint("other")  # unlimited: the sleeping fetcher asks when its next job is due
    def other(job: Job) -> None:
        pass

    first, _ = qm.queries.enqueue(["one", "one"], [None, None])
    engine(qm).ensure_limit_rows(["one"])
    elsewhere = uuid.uuid4()  # another worker runs the one job the limit allows
    claim = engine(qm).dequeue_limited(
        "one", 1, elsewhere, None, concurrency_limit=1, requests_per_second=None
    )
    assert [j.id for j in claim.jobs] == [first]
    # Held at the limit, the worker would look again only after dequeue_timeout.
    r = runner(qm, dequeue_timeout=3600, retry_timer=None)
    assert eventually(lambda: fetcher_asleep(conn, settings.schema), FAST)
    assert not ran.is_set()
    done = Outcome(first, 1, JobStatus.SUCCESSFUL, 0.0)
    assert engine(qm).complete(elsewhere, [done]).finished == {first}
    assert ran.wait(FAST), "the worker at the limit was not freed by the done NOTIFY"
    r.stop()


def test_drain_mode_returns_as_soon_as_the_last_outcome_is_written(
    qm: QueueManager, runner: Start, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    release = threading.Event()

    @qm.entrypoint("d")
    def d(job: Job) -> None:
        release.wait(GUARD)

    qm.queries.enqueue(["d"] * 3, [None] * 3)
    r = runner(qm, mode="drain", dequeue_timeout=3600, retry_timer=None)
    # Every job is claimed and running; the fetcher sleeps until they are written.
    assert eventually(lambda: fetcher_asleep(conn, settings.schema), FAST)
    release.set()
    r.join(FAST)
    assert [s.count for s in qm.queries.queue_size()] == []
