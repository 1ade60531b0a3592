"""Handlers that misbehave: hang past their timeout, cancel themselves, exit."""

from __future__ import annotations

import threading
from collections.abc import Callable

import tenacity

from pgqueue_sync import Job, JobStatus, QueueManager, RetryPolicy
from tests.conftest import Runner, eventually

Start = Callable[..., Runner]


def test_a_hung_handler_is_failed_at_its_timeout_and_the_worker_keeps_serving(
    qm: QueueManager, runner: Start
) -> None:
    gate = threading.Event()
    late = threading.Event()
    ok_done = threading.Event()
    ok_count = 0

    @qm.entrypoint("hang", timeout=0.3)
    def hang(job: Job) -> str:
        gate.wait(60)
        late.set()
        return "too late"

    @qm.entrypoint("ok")
    def ok(job: Job) -> None:
        nonlocal ok_count
        ok_count += 1
        if ok_count == 5:
            ok_done.set()

    [hung] = qm.queries.enqueue("hang", None)
    r = runner(qm, workers=2)
    [result] = qm.queries.wait_for([hung], timeout=30)
    assert result.status is JobStatus.EXCEPTION
    assert "JobTimeoutError" in (result.traceback or "")
    assert "gate.wait" in (result.traceback or "")  # where the handler was stuck
    assert qm.stuck_threads == 1
    qm.queries.enqueue(["ok"] * 5, [None] * 5)  # the other thread keeps serving
    assert ok_done.wait(30)
    gate.set()
    assert late.wait(30)
    assert eventually(lambda: qm.stuck_threads == 0)
    r.stop()
    assert [e.status for e in qm.queries.history(job_ids=[hung])] == [JobStatus.EXCEPTION]
    assert qm.last_stats is not None
    assert qm.last_stats.timed_out == 1


def test_a_timeout_counts_as_a_failed_attempt_for_the_retry_policy(
    qm: QueueManager, runner: Start
) -> None:
    release = threading.Event()

    @qm.entrypoint(
        "slow",
        timeout=0.2,
        retry=RetryPolicy(stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_fixed(0)),
    )
    def slow(job: Job) -> None:
        release.wait(60)

    [job_id] = qm.queries.enqueue("slow", None)
    r = runner(qm, workers=3)
    [result] = qm.queries.wait_for([job_id], timeout=30)
    release.set()
    r.stop()
    assert result.status is JobStatus.FAILED
    [job] = qm.queries.get_jobs([job_id])
    assert job.attempts == 2


def test_a_stuck_thread_is_replaced_and_does_not_hold_up_shutdown(
    qm: QueueManager, runner: Start
) -> None:
    gate = threading.Event()
    ok_done = threading.Event()
    seen = 0

    @qm.entrypoint("hang", timeout=0.2)
    def hang(job: Job) -> None:
        gate.wait(120)

    @qm.entrypoint("ok")
    def ok(job: Job) -> None:
        nonlocal seen
        seen += 1
        if seen == 3:
            ok_done.set()

    [hung] = qm.queries.enqueue("hang", None)
    r = runner(qm, workers=1)  # the only thread gets stuck
    [result] = qm.queries.wait_for([hung], timeout=30)
    assert result.status is JobStatus.EXCEPTION
    assert qm.stuck_threads == 1
    qm.queries.enqueue(["ok"] * 3, [None] * 3)
    assert ok_done.wait(30)  # served by the replacement thread
    r.stop()  # returns though the stuck handler never does (no shutdown_timeout given)
    gate.set()
    assert qm.queries.queue_size() == []


def test_a_stuck_thread_whose_handler_returns_at_last_takes_no_more_jobs(
    qm: QueueManager, runner: Start
) -> None:
    """Its replacement took its place: the worker runs ``workers`` threads, not one more."""
    gate = threading.Event()
    returned = threading.Event()
    stuck_thread: list[int] = []
    threads: set[int] = set()
    lock = threading.Lock()

    @qm.entrypoint("hang", timeout=0.2)
    def hang(job: Job) -> None:
        stuck_thread.append(threading.get_ident())
        gate.wait(60)
        returned.set()

    first = threading.Event()
    second = threading.Event()

    @qm.entrypoint("ok")
    def ok(job: Job) -> None:
        with lock:
            threads.add(threading.get_ident())
        if not first.is_set():
            # The first job holds its thread a while: were a second thread serving, it would
            # take the next job meanwhile (and end this wait early).
            first.set()
            second.wait(1.0)
        else:
            second.set()

    [hung] = qm.queries.enqueue("hang", None)
    r = runner(qm, workers=1)
    try:
        [result] = qm.queries.wait_for([hung], timeout=30)
        assert result.status is JobStatus.EXCEPTION
        gate.set()  # the stuck handler returns; its thread must end, not serve on
        assert returned.wait(30)
        assert eventually(lambda: qm.stuck_threads == 0)
        ids = qm.queries.enqueue(["ok"] * 40, [None] * 40)
        qm.queries.wait_for(ids, timeout=30)
    finally:
        gate.set()
        r.stop()
    assert len(threads) == 1
    assert stuck_thread[0] not in threads
