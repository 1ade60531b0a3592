"""Retries with backoff, deferred and unique jobs, cancellation, results, history."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import tenacity

from pgqueue_sync import (
    Context,
    DuplicateJobError,
    Job,
    JobNotFoundError,
    JobStatus,
    ManualClock,
    PsycopgDriver,
    QueueManager,
    RetryPolicy,
    RetryRequested,
    Settings,
    WaitTimeoutError,
)
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.hooks import WorkerHooks
from pgqueue_sync.engine.store import Store
from pgqueue_sync.models import JobId
from tests.conftest import Runner, engine, eventually, wait_promptly
from tests.stateful.harness import Hooks, observed

Start = Callable[..., Runner]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cqm(driver: PsycopgDriver, settings: Settings, clock: ManualClock) -> QueueManager:
    """A QueueManager on a manual clock: time moves only when the test says so."""
    manager = QueueManager(driver, settings=settings, clock=clock)
    manager.queries.install()
    return manager


def drain(qm: QueueManager, **kwargs: Any) -> None:
    """Run until no job is due; a run that never ends fails the test (after 60 s)."""
    r = Runner(qm, mode="drain", dequeue_timeout=1.0, **kwargs).start()
    try:
        r.join(60)
    finally:
        if r.thread.is_alive():
            qm.alive = False
            r.thread.join(30)


def test_retry_with_backoff_ends_failed_after_n_attempts(
    cqm: QueueManager, clock: ManualClock
) -> None:
    attempts: list[int] = []

    @cqm.entrypoint(
        "flaky",
        retry=RetryPolicy(
            stop=tenacity.stop_after_attempt(3),
            wait=tenacity.wait_exponential(multiplier=2, max=60),
        ),
    )
    def flaky(job: Job) -> None:
        attempts.append(job.attempts)
        raise ValueError(f"attempt {job.attempts} failed")

    [job_id] = cqm.queries.enqueue("flaky", b"")
    for expected_delay in (2, 4):
        drain(cqm)
        [job] = cqm.queries.get_jobs([job_id])
        assert job.status is JobStatus.QUEUED
        assert job.execute_after == clock.now() + timedelta(seconds=expected_delay)
        assert f"attempt {job.attempts} failed" in (job.last_error or "")
        drain(cqm)  # not due yet: nothing runs
        assert len(attempts) == job.attempts
        clock.advance(expected_delay)
    drain(cqm)
    assert attempts == [1, 2, 3]
    [job] = cqm.queries.get_jobs([job_id])
    assert (job.status, job.attempts, job.worker_id) == (JobStatus.FAILED, 3, None)
    [entry] = cqm.queries.history(job_ids=[job_id])
    assert entry.status is JobStatus.FAILED
    assert "ValueError: attempt 3 failed" in (entry.traceback or "")

    # requeue brings it back with fresh attempts
    assert cqm.queries.requeue([job_id]) == [job_id]
    [job] = cqm.queries.get_jobs([job_id])
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)
    assert cqm.queries.requeue([job_id]) == []  # only failed jobs are requeued


def test_stop_after_delay_counts_from_the_jobs_creation(
    driver: PsycopgDriver, settings: Settings
) -> None:
    # Rows are created at the database's now(): the clock starts there too.
    clock = ManualClock(datetime.now(timezone.utc))
    cqm = QueueManager(driver, settings=settings, clock=clock)
    cqm.queries.install()
    attempts: list[int] = []

    @cqm.entrypoint(
        "patient",
        retry=RetryPolicy(stop=tenacity.stop_after_delay(50), wait=tenacity.wait_fixed(25)),
    )
    def patient(job: Job) -> None:
        attempts.append(job.attempts)
        raise ValueError("still down")

    [job_id] = cqm.queries.enqueue("patient", None)
    clock.advance(10)  # the job waited 10 s before its first run
    for _ in range(4):
        drain(cqm)
        clock.advance(25)
    # Runs about 10, 35 and 60 s after creation: the third is past the 50 s budget.
    assert attempts == [1, 2, 3]
    [job] = cqm.queries.get_jobs([job_id])
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)


def test_retry_only_on_the_given_exception_types(cqm: QueueManager) -> None:
    @cqm.entrypoint(
        "picky",
        retry=RetryPolicy(retry=tenacity.retry_if_exception_type(ConnectionError)),
    )
    def picky(job: Job) -> None:
        if job.payload == b"transient":
            raise ConnectionError("try again")
        raise ValueError("permanent")

    transient, permanent = cqm.queries.enqueue(["picky", "picky"], [b"transient", b"permanent"])
    drain(cqm)
    jobs = {j.id: j for j in cqm.queries.get_jobs([transient, permanent])}
    assert jobs[transient].status is JobStatus.QUEUED
    assert jobs[permanent].status is JobStatus.FAILED
    assert jobs[permanent].attempts == 1


def test_retry_requested_by_the_handler(cqm: QueueManager, clock: ManualClock) -> None:
    runs: list[int] = []

    @cqm.entrypoint("later")
    def later(job: Job) -> str:
        runs.append(job.attempts)
        if job.attempts < 2:
            raise RetryRequested(delay=timedelta(seconds=30), reason="upstream busy")
        return "done"

    [job_id] = cqm.queries.enqueue("later", None)
    drain(cqm)
    [job] = cqm.queries.get_jobs([job_id])
    assert job.execute_after == clock.now() + timedelta(seconds=30)
    assert "upstream busy" in (job.last_error or "")
    clock.advance(30)
    drain(cqm)
    assert runs == [1, 2]
    [entry] = cqm.queries.history(job_ids=[job_id])
    assert (entry.status, entry.value) == (JobStatus.SUCCESSFUL, "done")


def test_retry_requested_forever_ends_failed_when_the_policy_stops(
    cqm: QueueManager, clock: ManualClock
) -> None:
    runs: list[int] = []

    @cqm.entrypoint("again", retry=RetryPolicy(stop=tenacity.stop_after_attempt(3)))
    def again(job: Job) -> None:
        runs.append(job.attempts)
        raise RetryRequested(delay=timedelta(seconds=5), reason="not yet")

    [job_id] = cqm.queries.enqueue("again", None)
    for _ in range(4):
        drain(cqm)
        clock.advance(5)
    assert runs == [1, 2, 3]
    [job] = cqm.queries.get_jobs([job_id])
    assert (job.status, job.attempts) == (JobStatus.FAILED, 3)
    [entry] = cqm.queries.history(job_ids=[job_id])
    assert entry.status is JobStatus.FAILED
    assert "RetryRequested: not yet" in (entry.traceback or "")


def test_drain_mode_runs_a_job_retried_while_its_last_claim_looked(qm: QueueManager) -> None:
    runs: list[int] = []
    looked = threading.Event()

    @qm.entrypoint("again", retry=RetryPolicy(wait=tenacity.wait_fixed(0)))
    def again(job: Job) -> None:
        runs.append(job.attempts)
        if job.attempts == 1:
            assert looked.wait(30)
            raise ValueError("once more")

    class Hold(Hooks):
        def fetched(self, worker: Worker, jobs: list[Job], after_stop: bool) -> None:
            if not jobs and worker.ledger.any_held() and not looked.is_set():
                # A claim found nothing while the job ran; its retry, due at once, is written
                # before the fetcher looks at what it holds.
                looked.set()
                assert eventually(lambda: not worker.ledger.any_held())

    qm.worker_class = observed(Hold())
    [job_id] = qm.queries.enqueue("again", None)
    drain(qm)
    assert runs == [1, 2]
    assert [e.status for e in qm.queries.history(job_ids=[job_id])] == [JobStatus.SUCCESSFUL]


def test_deferred_jobs_wait_for_their_time(cqm: QueueManager, clock: ManualClock) -> None:
    ran: list[bytes] = []

    @cqm.entrypoint("deferred")
    def deferred(job: Job) -> None:
        ran.append(job.payload or b"")

    cqm.queries.enqueue(
        ["deferred"] * 3,
        [b"now", b"in 10s", b"at t+60"],
        execute_after=[None, timedelta(seconds=10), clock.now() + timedelta(seconds=60)],
    )
    drain(cqm)
    assert ran == [b"now"]
    clock.advance(10)
    drain(cqm)
    assert ran == [b"now", b"in 10s"]
    clock.advance(50)
    drain(cqm)
    assert ran == [b"now", b"in 10s", b"at t+60"]


def test_unique_jobs(qm: QueueManager, conn: psycopg.Connection[Any], dsn: str) -> None:
    @qm.entrypoint("report")
    def report(job: Job) -> None:
        pass

    [first] = qm.queries.enqueue("report", b"", dedupe_key="daily-2026-11-27")
    with pytest.raises(DuplicateJobError) as info:
        qm.queries.enqueue("report", b"", dedupe_key="daily-2026-11-27")
    assert info.value.dedupe_keys == ["daily-2026-11-27"]
    assert (
        qm.queries.enqueue(
            ["report", "report", "report"],
            [None] * 3,
            dedupe_key=["daily-2026-11-27", None, "weekly"],
            on_conflict="skip",
        )[0]
        == first
    )
    again = qm.queries.enqueue(
        ["report", "report"], [None, None], dedupe_key=["monthly", "monthly"], on_conflict="skip"
    )
    assert again[0] == again[1]
    # A duplicate inside the caller's transaction leaves that transaction usable.
    with psycopg.connect(dsn) as tx:
        with pytest.raises(DuplicateJobError):
            qm.queries.enqueue("report", b"", dedupe_key="weekly", connection=tx)
        qm.queries.enqueue("report", b"", connection=tx)
        tx.commit()
    assert sum(s.count for s in qm.queries.queue_size()) == 5
    # Once the job is done the key is free again.
    drain(qm)
    qm.queries.enqueue("report", b"", dedupe_key="daily-2026-11-27")


def test_a_dedupe_key_stays_taken_while_its_job_runs(qm: QueueManager) -> None:
    [holder] = qm.queries.enqueue("report", b"", dedupe_key="nightly")
    [running] = engine(qm).dequeue(1, ["report"], uuid.uuid4())
    assert (running.id, running.status) == (holder, JobStatus.PICKED)
    with pytest.raises(DuplicateJobError) as info:
        qm.queries.enqueue("report", b"", dedupe_key="nightly")
    assert info.value.dedupe_keys == ["nightly"]
    ids = qm.queries.enqueue(
        ["report", "report"], [None, None], dedupe_key=["nightly", "other"], on_conflict="skip"
    )
    assert ids[0] == holder
    assert {j.id for j in qm.queries.get_jobs([holder, ids[1]])} == {holder, ids[1]}
    assert sum(s.count for s in qm.queries.queue_size()) == 2


class Concurrency:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.peak = 0
        self.total = 0

    def __enter__(self) -> None:
        with self.lock:
            self.now += 1
            self.total += 1
            self.peak = max(self.peak, self.now)

    def __exit__(self, *exc: object) -> None:
        with self.lock:
            self.now -= 1


def test_global_concurrency_limit_holds_across_workers(
    dsn: str, settings: Settings, runner: Start
) -> None:
    gauge = Concurrency()
    n = 60
    done = threading.Event()
    managers = []
    drivers = []
    for _ in range(4):
        driver = PsycopgDriver(dsn)
        drivers.append(driver)
        qm = QueueManager(driver, settings=settings)

        @qm.entrypoint("limited", concurrency_limit=2)
        def limited(job: Job) -> None:
            with gauge:
                threading.Event().wait(0.01)  # the work
            if gauge.total == n:
                done.set()

        managers.append(qm)
    managers[0].queries.install()
    managers[0].queries.enqueue(["limited"] * n, [None] * n)
    runners = [runner(qm, workers=8, batch_size=4) for qm in managers]
    assert done.wait(120)
    for r in runners:
        r.stop()
    for driver in drivers:
        driver.close()
    assert gauge.total == n
    assert gauge.peak == 2


def test_per_worker_limit(qm: QueueManager) -> None:
    gauge = Concurrency()

    @qm.entrypoint("capped", per_worker_limit=3)
    def capped(job: Job) -> None:
        with gauge:
            threading.Event().wait(0.01)

    qm.queries.enqueue(["capped"] * 40, [None] * 40)
    drain(qm, workers=8, batch_size=10)
    assert gauge.total == 40
    assert gauge.peak <= 3


def test_requests_per_second_is_a_global_token_bucket(
    cqm: QueueManager, clock: ManualClock
) -> None:
    ran: list[int] = []

    @cqm.entrypoint("api", requests_per_second=5)
    def api(job: Job) -> None:
        ran.append(job.id)

    cqm.queries.enqueue(["api"] * 20, [None] * 20)
    drain(cqm)
    assert len(ran) == 5  # the bucket starts full: one second's worth
    drain(cqm)
    assert len(ran) == 5  # no time passed, no tokens
    clock.advance(1)
    drain(cqm)
    assert len(ran) == 10
    clock.advance(0.4)
    drain(cqm)
    assert len(ran) == 12


def test_cancel_queued_failed_and_running_jobs(qm: QueueManager, runner: Start) -> None:
    started = threading.Event()
    outcome: list[str] = []

    @qm.entrypoint("long")
    def long(job: Job, ctx: Context) -> None:
        started.set()
        if ctx.cancelled.wait(30):
            outcome.append("saw cancellation")
        ctx.check()

    @qm.entrypoint("other")
    def other(job: Job) -> None:
        pass

    @qm.entrypoint("fails", retry=RetryPolicy(stop=tenacity.stop_after_attempt(1)))
    def fails(job: Job) -> None:
        raise ValueError("gives up at once")

    [failed] = qm.queries.enqueue("fails", None)
    [running] = qm.queries.enqueue("long", None)
    [queued] = qm.queries.enqueue("other", None, execute_after=timedelta(hours=1))
    r = runner(qm)
    assert started.wait(30)
    [first] = wait_promptly(qm.queries, [failed])
    assert first.status is JobStatus.FAILED
    assert [j.status for j in qm.queries.get_jobs([failed])] == [JobStatus.FAILED]
    result = qm.queries.cancel([running, queued, failed])
    assert result.canceled == sorted([queued, failed])
    assert result.requested == [running]
    [final] = wait_promptly(qm.queries, [running])
    assert final.status is JobStatus.CANCELED
    assert outcome == ["saw cancellation"]
    r.stop()
    latest: dict[int, JobStatus] = {}
    for entry in qm.queries.history():  # newest first
        latest.setdefault(entry.job_id, entry.status)
    assert latest == {
        running: JobStatus.CANCELED,
        queued: JobStatus.CANCELED,
        failed: JobStatus.CANCELED,
    }
    assert [e.status for e in qm.queries.history(job_ids=[failed])] == [
        JobStatus.CANCELED,
        JobStatus.FAILED,
    ]
    assert qm.queries.queue_size() == []


def test_a_missed_cancel_notify_arrives_with_the_next_heartbeat(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings, runner: Start
) -> None:
    started = threading.Event()

    @qm.entrypoint("long")
    def long(job: Job, ctx: Context) -> None:
        started.set()
        ctx.cancelled.wait(30)
        ctx.check()

    [job_id] = qm.queries.enqueue("long", None)
    # retry_timer far away: the worker cannot re-claim its own job (whose claim would carry
    # the flag too), so only a heartbeat can bring the request.
    r = runner(qm, retry_timer=3600, heartbeat_interval=0.05)
    assert started.wait(30)
    table = settings.ident("jobs").as_string(None)
    conn.execute(f"UPDATE {table} SET cancel_requested = true WHERE id = %s", (job_id,))
    [final] = wait_promptly(qm.queries, [job_id])
    assert final.status is JobStatus.CANCELED
    [entry] = qm.queries.history(job_ids=[job_id])
    assert entry.attempts == 1  # the first and only attempt saw it
    r.stop()


def test_a_cancelled_job_waiting_in_the_buffer_never_runs(qm: QueueManager, runner: Start) -> None:
    started = threading.Event()
    ran: list[int] = []

    @qm.entrypoint("block")
    def block(job: Job, ctx: Context) -> None:
        started.set()
        ctx.cancelled.wait(30)
        ctx.check()

    @qm.entrypoint("next")
    def next_job(job: Job) -> None:
        ran.append(job.id)

    [first] = qm.queries.enqueue("block", None)
    [second] = qm.queries.enqueue("next", None)
    # One thread, both jobs claimed together: the second waits in the buffer behind the first.
    # Heartbeats far away: the cancel requests come by NOTIFY.
    r = runner(qm, workers=1, batch_size=2, retry_timer=3600, heartbeat_interval=600)
    assert started.wait(30)
    assert [j.status for j in qm.queries.get_jobs([second])] == [JobStatus.PICKED]
    assert qm.queries.cancel([second]).requested == [second]
    # Events reach the worker in order: by the time the first handler sees its own
    # cancellation, the second job's has arrived too.
    assert qm.queries.cancel([first]).requested == [first]
    results = wait_promptly(qm.queries, [first, second])
    assert [res.status for res in results] == [JobStatus.CANCELED, JobStatus.CANCELED]
    assert ran == []
    r.stop()


def test_a_job_released_with_a_cancel_request_never_runs(qm: QueueManager) -> None:
    ran: list[int] = []

    @qm.entrypoint("c")
    def handler(job: Job) -> None:
        ran.append(job.id)

    [job_id] = qm.queries.enqueue("c", None)
    gone = uuid.uuid4()  # a worker that claimed it, was asked to cancel it, and gave it back
    engine(qm).dequeue(1, ["c"], gone)
    assert qm.queries.cancel([job_id]).requested == [job_id]
    assert engine(qm).release(gone, {job_id}, {job_id}) == {job_id}
    drain(qm)
    assert ran == []
    [entry] = qm.queries.history(job_ids=[job_id])
    assert entry.status is JobStatus.CANCELED
    assert qm.queries.queue_size() == []


def test_results_and_wait_for(qm: QueueManager, runner: Start) -> None:
    @qm.entrypoint("answer")
    def answer(job: Job) -> Any:
        if job.payload == b"bytes":
            return b"\x00raw"
        if job.payload == b"fail":
            raise RuntimeError("no answer")
        if job.payload == b"opaque":
            return object()  # neither bytes nor JSON: the job cannot keep it
        return {"answer": 42, "payload": (job.payload or b"").decode()}

    ids = qm.queries.enqueue(["answer"] * 4, [b"json", b"bytes", b"fail", b"opaque"])
    r = runner(qm)
    results = wait_promptly(qm.queries, ids)
    r.stop()
    assert [res.job_id for res in results] == ids
    assert results[0].value == {"answer": 42, "payload": "json"}
    assert results[1].result == b"\x00raw"
    assert results[2].status is JobStatus.EXCEPTION
    assert "RuntimeError: no answer" in (results[2].traceback or "")
    assert (results[3].status, results[3].value, results[3].result) == (
        JobStatus.EXCEPTION,
        None,
        None,
    )
    assert "UnstorableResultError" in (results[3].traceback or "")


def test_wait_for_ignores_the_outcome_of_an_earlier_run_of_a_live_job(qm: QueueManager) -> None:
    runs: list[int] = []

    @qm.entrypoint("flaky", retry=RetryPolicy(stop=tenacity.stop_after_attempt(1)))
    def flaky(job: Job) -> str:
        runs.append(job.id)
        if len(runs) == 1:
            raise ValueError("first run fails")
        return "second run"

    [job_id] = qm.queries.enqueue("flaky", None)
    drain(qm)
    [first] = qm.queries.wait_for([job_id], timeout=5)
    assert first.status is JobStatus.FAILED
    assert qm.queries.requeue([job_id]) == [job_id]
    # Queued again, then running: its failed row is history, not its result.
    with pytest.raises(WaitTimeoutError) as info:
        qm.queries.wait_for([job_id], timeout=0.2)
    assert info.value.finished == {}
    worker = uuid.uuid4()
    assert [j.id for j in engine(qm).dequeue(1, ["flaky"], worker)] == [job_id]
    with pytest.raises(WaitTimeoutError):
        qm.queries.wait_for([job_id], timeout=0.2)
    engine(qm).release(worker, {job_id}, {job_id})
    drain(qm)
    [second] = qm.queries.wait_for([job_id], timeout=5)
    assert (second.status, second.value) == (JobStatus.SUCCESSFUL, "second run")
    assert [e.status for e in qm.queries.history(job_ids=[job_id])] == [
        JobStatus.SUCCESSFUL,
        JobStatus.FAILED,
    ]


def test_wait_for_errors(qm: QueueManager) -> None:
    @qm.entrypoint("never")
    def never(job: Job) -> None:
        pass

    with pytest.raises(JobNotFoundError):
        qm.queries.wait_for([123456789], timeout=1)
    [job_id] = qm.queries.enqueue("never", None)
    with pytest.raises(WaitTimeoutError) as info:
        qm.queries.wait_for([job_id], timeout=0.2)
    assert info.value.finished == {}


WORKER_SCRIPT = textwrap.dedent(
    """
    import sys
    from pgqueue_sync import PsycopgDriver, QueueManager, Settings

    qm = QueueManager(PsycopgDriver(sys.argv[1]), settings=Settings(schema=sys.argv[2]))

    @qm.entrypoint("square")
    def square(job):
        n = int(job.payload)
        return {"square": n * n}

    qm.run(mode="drain", dequeue_timeout=1)
    """
)


def test_wait_for_a_job_finished_by_another_process(
    qm: QueueManager, dsn: str, settings: Settings
) -> None:
    producer = QueueManager(qm.driver, settings=settings, check_entrypoints=False)
    [job_id] = producer.queries.enqueue("square", b"12")
    worker = subprocess.Popen([sys.executable, "-c", WORKER_SCRIPT, dsn, settings.schema])
    try:
        [result] = wait_promptly(producer.queries, [job_id], within=25)
    finally:
        worker.wait(60)
    assert worker.returncode == 0
    assert (result.status, result.value) == (JobStatus.SUCCESSFUL, {"square": 144})


def test_transactional_enqueue_rolled_back_leaves_no_job_and_no_wakeup(
    qm: QueueManager, dsn: str, settings: Settings
) -> None:
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f'LISTEN "{settings.channel}"')
        with psycopg.connect(dsn) as tx:
            with tx.cursor() as cur:
                cur.execute("SELECT 1")
                qm.queries.enqueue("a", b"rolled back", connection=cur)
            tx.rollback()
            [kept] = qm.queries.enqueue("a", b"committed", connection=tx)
            tx.commit()
        events = list(listener.notifies(timeout=1.0))
    assert len(events) == 1  # only the committed insert woke anyone
    assert [j.id for j in qm.queries.get_jobs(range(1, 10))] == [kept]


def test_headers_travel_with_the_job_and_into_the_log(qm: QueueManager) -> None:
    seen: list[Any] = []

    @qm.entrypoint("traced")
    def traced(job: Job) -> None:
        seen.append(job.headers)

    qm.queries.enqueue("traced", b"", headers={"trace_id": "abc", "user": 7})
    drain(qm)
    assert seen == [{"trace_id": "abc", "user": 7}]
    assert qm.queries.history()[0].headers == {"trace_id": "abc", "user": 7}


def test_history_filters_and_log_retention(cqm: QueueManager, clock: ManualClock) -> None:
    @cqm.entrypoint("h")
    def h(job: Job) -> None:
        if job.payload == b"bad":
            raise ValueError

    cqm.queries.enqueue(["h", "h"], [b"ok", b"bad"])
    drain(cqm)
    t1 = clock.now()
    clock.advance(timedelta(days=2))
    cqm.queries.enqueue("h", b"ok")
    drain(cqm)
    assert len(cqm.queries.history()) == 3
    assert len(cqm.queries.history(status="exception")) == 1
    assert len(cqm.queries.history(since=t1 + timedelta(days=1))) == 1
    assert len(cqm.queries.history(until=t1 + timedelta(days=1))) == 2
    assert cqm.queries.prune_log(timedelta(days=1), batch_size=1) == 2
    assert len(cqm.queries.history()) == 1


def test_the_worker_prunes_the_log_when_retention_is_set(
    cqm: QueueManager, clock: ManualClock, runner: Start
) -> None:
    @cqm.entrypoint("h")
    def h(job: Job) -> None:
        pass

    cqm.queries.enqueue(["h"] * 3, [None] * 3)
    drain(cqm)
    clock.advance(timedelta(days=8))
    r = runner(cqm, log_retention=timedelta(days=7), heartbeat_interval=0.05, retry_timer=1.0)
    assert eventually(lambda: cqm.queries.history() == [])
    r.stop()


def test_an_outcome_fenced_out_by_a_repick_is_counted_and_reported_not_recorded(
    cqm: QueueManager, clock: ManualClock, runner: Start
) -> None:
    """The worker's heartbeat lapses while its handler runs and another worker re-picks the
    job: the handler's outcome is refused by the database (fenced), counted as such in the
    run's stats and reported to hooks as fenced, not as recorded."""
    running = threading.Event()
    finish = threading.Event()
    written: list[tuple[list[int], list[int]]] = []

    class Watch(WorkerHooks):
        def outcomes_written(self, recorded: Sequence[JobId], fenced: Sequence[JobId]) -> None:
            written.append((list(recorded), list(fenced)))

    cqm.add_hooks(Watch())

    @cqm.entrypoint("slow")
    def slow(job: Job) -> None:
        running.set()
        finish.wait(30)

    [job_id] = cqm.queries.enqueue("slow", None)
    r = runner(cqm, workers=1, retry_timer=3600, heartbeat_interval=600)
    assert running.wait(30)
    # Another worker, whose clock is three hours ahead (this worker's does not move, so it
    # sends no heartbeat): the claim is stale to it.
    later = ManualClock(start=clock.now() + timedelta(hours=3))
    other = uuid.uuid4()
    [repicked] = Store(cqm.driver, cqm.settings, clock=later).dequeue(
        1, ["slow"], other, timedelta(hours=1)
    )
    assert (repicked.id, repicked.attempts) == (job_id, 2)
    finish.set()
    assert eventually(lambda: any(fenced for _, fenced in written))
    r.stop()
    assert written == [([], [job_id])]
    assert cqm.last_stats is not None
    assert cqm.last_stats.fenced == 1
    [held] = cqm.queries.get_jobs([job_id])  # still the other worker's, at its attempt
    assert (held.status, held.worker_id, held.attempts) == (JobStatus.PICKED, other, 2)
