"""A worker through PgBouncer in transaction mode: claims, outcomes, heartbeats, limits,
cancellation, retries, shutdown; woken through listen_dsn, or polling without it."""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import psycopg
import pytest
import tenacity

from pgqueue_sync import (
    Context,
    Job,
    JobStatus,
    PsycopgDriver,
    QueueManager,
    RetryPolicy,
    Settings,
)
from pgqueue_sync.engine.hooks import WorkerHooks
from pgqueue_sync.engine.store import Store
from pgqueue_sync.errors import TransactionPoolingError
from tests.pgbouncer.conftest import Make, Recorder, Start, statuses
from tests.pgbouncer.server import PgBouncer


def signalling_idle(qm: QueueManager) -> threading.Event:
    """An Event set whenever the worker's claim comes back empty (it is about to sleep)."""
    idle = threading.Event()

    class IdleSignalling(WorkerHooks):
        def claimed(self, jobs: Sequence[Job]) -> None:
            if not jobs:
                idle.set()

    qm.add_hooks(IdleSignalling())
    return idle


def drain_after_idle(
    qm: QueueManager, runner: Start, jobs: int, **run_options: Any
) -> tuple[Recorder, list[int]]:
    """Start a worker, wait until it is idle, then enqueue ``jobs`` and wait for all."""
    idle = signalling_idle(qm)
    recorder = Recorder(jobs)
    qm.entrypoint("k")(recorder)
    r = runner(qm, **run_options)
    assert idle.wait(10), "the worker never made its first claim"
    ids = [qm.queries.enqueue("k", str(i).encode())[0] for i in range(jobs)]
    assert recorder.done.wait(10), f"only {len(recorder.runs)} of {jobs} jobs ran"
    r.stop()
    return recorder, ids


def test_worker_with_listen_dsn_is_woken_by_notify(
    make_qm: Make, dsn: str, settings: Settings, runner: Start, conn: Any
) -> None:
    qm = make_qm(listen_dsn=dsn)
    # An idle worker sleeps dequeue_timeout (60 s) unless a NOTIFY wakes it: every job enqueued
    # after it went idle ran within seconds, so the wake-ups came through listen_dsn.
    recorder, ids = drain_after_idle(qm, runner, 30, dequeue_timeout=60, workers=4)
    assert sorted(recorder.runs) == sorted(ids)
    assert set(recorder.runs.values()) == {1}
    assert statuses(conn, settings) == {"successful": 30}


def test_worker_without_listen_dsn_polls_and_warns_once(
    make_qm: Make, settings: Settings, runner: Start, conn: Any, caplog: Any
) -> None:
    qm = make_qm()
    with caplog.at_level(logging.WARNING, logger="pgqueue_sync"):
        recorder, ids = drain_after_idle(qm, runner, 20, dequeue_timeout=0.2, workers=2)
    assert sorted(recorder.runs) == sorted(ids)
    assert set(recorder.runs.values()) == {1}
    warnings = [r.getMessage() for r in caplog.records if "listen_dsn" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "dequeue_timeout" in warnings[0]
    assert statuses(conn, settings) == {"successful": 20}


def test_worker_without_transaction_pooling_fails_with_what_to_do(
    make_qm: Make, settings: Settings, runner: Start
) -> None:
    qm = make_qm(transaction_pooling=False)
    qm.entrypoint("k")(Recorder(0))
    qm.queries.enqueue(["k"] * 40, [None] * 40)
    r = runner(qm, batch_size=1, workers=1, mode="drain", dequeue_timeout=0.2)
    with pytest.raises(TransactionPoolingError, match=r"transaction_pooling=True"):
        r.join()


def test_worker_session_settings_do_not_leak_to_other_clients(
    make_qm: Make, bouncer: PgBouncer, settings: Settings, runner: Start
) -> None:
    qm = make_qm()
    recorder = Recorder(3)
    qm.entrypoint("k")(recorder)
    qm.queries.enqueue(["k"] * 3, [None] * 3)
    runner(qm, batch_size=10, workers=1, mode="drain", dequeue_timeout=0.2).join()
    assert len(recorder.runs) == 3
    # Round robin over both server connections: a SET left on either would show here.
    with psycopg.connect(bouncer.dsn, autocommit=True, prepare_threshold=None) as other:
        seen = {
            other.execute(
                "SELECT current_setting('synchronous_commit'), current_setting('plan_cache_mode')"
            ).fetchone()
            for _ in range(6)
        }
    assert seen == {("on", "auto")}


def test_limits_hold_across_workers(
    make_qm: Make, settings: Settings, runner: Start, conn: Any
) -> None:
    managers = [make_qm() for _ in range(2)]
    lock = threading.Lock()
    running = 0
    peak = 0
    recorder = Recorder(16)

    def limited(job: Job) -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        threading.Event().wait(0.05)  # the job's work
        with lock:
            running -= 1
        recorder(job)

    for qm in managers:
        qm.entrypoint("limited", concurrency_limit=2)(limited)
        qm.entrypoint("rated", requests_per_second=50)(recorder)
    managers[0].queries.enqueue(["limited"] * 8 + ["rated"] * 8, [None] * 16)
    started = [runner(qm, workers=4, batch_size=4, dequeue_timeout=0.2) for qm in managers]
    assert recorder.done.wait(20), f"{len(recorder.runs)} of 16 jobs ran"
    for r in started:
        r.stop()
    assert peak <= 2
    assert set(recorder.runs.values()) == {1}
    assert statuses(conn, settings) == {"successful": 16}


def test_cancel_reaches_a_running_job_through_the_heartbeat(
    make_qm: Make, settings: Settings, runner: Start
) -> None:
    qm = make_qm()  # no listen_dsn: no NOTIFY reaches the worker
    started = threading.Event()

    @qm.entrypoint("long")
    def long(job: Job, ctx: Context) -> None:
        started.set()
        assert ctx.cancelled.wait(20), "never cancelled"
        ctx.check()

    (job_id,) = qm.queries.enqueue("long")
    r = runner(qm, workers=1, dequeue_timeout=0.2, retry_timer=1.0)
    assert started.wait(10)
    assert qm.queries.cancel([job_id]).requested == [job_id]
    (result,) = qm.queries.wait_for([job_id], timeout=15)
    r.stop()
    assert result.status is JobStatus.CANCELED


def test_heartbeats_keep_a_long_job_from_being_re_picked(
    make_qm: Make, settings: Settings, runner: Start
) -> None:
    managers = [make_qm() for _ in range(2)]
    recorder = Recorder(1)

    def slow(job: Job) -> None:
        recorder(job)
        threading.Event().wait(2.5)  # the job's work, longer than retry_timer

    for qm in managers:
        qm.entrypoint("slow")(slow)
    (job_id,) = managers[0].queries.enqueue("slow")
    started = [runner(qm, workers=1, dequeue_timeout=0.1, retry_timer=1.0) for qm in managers]
    (result,) = managers[0].queries.wait_for([job_id], timeout=15)
    for r in started:
        r.stop()
    assert result.status is JobStatus.SUCCESSFUL
    assert recorder.runs == {job_id: 1}


def test_retries_and_wait_for_by_polling(make_qm: Make, settings: Settings, runner: Start) -> None:
    qm = make_qm()
    policy = RetryPolicy(stop=tenacity.stop_after_attempt(3), wait=tenacity.wait_fixed(0))

    @qm.entrypoint("flaky", retry=policy)
    def flaky(job: Job, ctx: Context) -> str:
        if ctx.attempt < 3:
            raise RuntimeError(f"attempt {ctx.attempt}")
        return "ok"

    ids = qm.queries.enqueue(["flaky"] * 3, [None] * 3)
    r = runner(qm, workers=2, dequeue_timeout=0.2)
    results = qm.queries.wait_for(ids, timeout=15)
    r.stop()
    assert [res.status for res in results] == [JobStatus.SUCCESSFUL] * 3
    assert [res.value for res in results] == ["ok"] * 3
    assert sorted(e.attempts for e in qm.queries.history(job_ids=ids)) == [3, 3, 3]


def test_wait_for_listens_on_listen_dsn(
    make_qm: Make, dsn: str, settings: Settings, runner: Start
) -> None:
    qm = make_qm(listen_dsn=dsn)
    release = threading.Event()

    @qm.entrypoint("gated")
    def gated(job: Job) -> None:
        assert release.wait(20)

    ids = qm.queries.enqueue(["gated"] * 2, [None] * 2)
    r = runner(qm, workers=2, dequeue_timeout=60)
    waiter = threading.Timer(0.3, release.set)
    waiter.start()
    results = qm.queries.wait_for(ids, timeout=15)
    r.stop()
    waiter.join()
    assert [res.status for res in results] == [JobStatus.SUCCESSFUL] * 2


def test_shutdown_releases_unfinished_jobs(
    make_qm: Make, settings: Settings, runner: Start, conn: Any
) -> None:
    qm = make_qm()
    started = threading.Event()
    release = threading.Event()

    @qm.entrypoint("stuck")
    def stuck(job: Job) -> None:
        started.set()
        release.wait(20)

    qm.queries.enqueue(["stuck"] * 3, [None] * 3)
    r = runner(qm, workers=1, batch_size=3, shutdown_timeout=0.3, dequeue_timeout=0.2)
    assert started.wait(10)
    try:
        r.stop()
        assert statuses(conn, settings) == {"queued": 3}
    finally:
        release.set()


def test_claims_commit_asynchronously_without_a_session_setting(
    make_qm: Make, bouncer: PgBouncer, settings: Settings
) -> None:
    # What the worker's fetch connection does through PgBouncer, in a transaction of ours so
    # that the setting can be seen: each claim turns synchronous_commit off for its own
    # transaction (as the session SET does on a direct connection), and for nothing else.
    producer = make_qm().queries
    producer.enqueue(["k"] * 4, [None] * 4)
    with psycopg.connect(bouncer.dsn, autocommit=True, prepare_threshold=None) as conn:
        claims = Store(PsycopgDriver(conn, transaction_pooling=True), settings)
        claims.async_commit_claims = True
        seen = []
        for _ in range(2):
            with conn.transaction():
                assert len(claims.dequeue(2, ["k"], uuid.uuid4())) == 2
                seen.append(conn.execute("SHOW synchronous_commit").fetchone())
            seen.append(conn.execute("SHOW synchronous_commit").fetchone())
    assert seen == [("off",), ("on",), ("off",), ("on",)]
