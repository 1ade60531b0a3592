"""Claims made by the listener while the fetch loop sleeps (Worker.claim_on_listener).

An idle worker's listener claims on its own connection, on its own thread, as soon as a
NOTIFY wakes it. Each test puts the fetch loop's own fallbacks (its idle timeout, the retry
timer) far out of reach, so that what the listener claims, and when it hands the work back
to the fetch loop, decides whether jobs run at all.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue_sync import Context, Job, JobStatus, PsycopgDriver, QueueManager, Settings, events
from pgqueue_sync.engine import runner as runner_module
from pgqueue_sync.engine.hooks import WorkerHooks
from pgqueue_sync.engine.worker import Worker
from tests.conftest import Runner, eventually

Start = Callable[..., Runner]

# Bound on every wait: far below the fallbacks the tests disable (an hour).
FAST = 10.0
# How long a blocked handler waits before giving up (reached only when a test fails).
GUARD = 30.0
LISTENER_THREAD = "pgqueue-sync-listener"


class Claims(WorkerHooks):
    """Records, for every claim that returned jobs, the thread that made it and its jobs."""

    def __init__(self) -> None:
        self.worker: Worker | None = None
        self.made: list[tuple[str, list[int]]] = []
        self.stop_seen_event = threading.Event()
        self.shutting_down_event = threading.Event()

    def worker_started(self, worker: Worker) -> None:
        self.worker = worker

    def asleep(self) -> bool:
        """The fetch loop sleeps after an empty claim: a NOTIFY now goes to the listener."""
        return self.worker is not None and self.worker.fetch_loop_asleep

    def claimed(self, jobs: Sequence[Job]) -> None:
        if jobs:
            self.made.append((threading.current_thread().name, [job.id for job in jobs]))

    def stop_seen(self) -> None:
        self.stop_seen_event.set()

    def shutting_down(self) -> None:
        self.shutting_down_event.set()


def listener_waits_on_a_lock(conn: psycopg.Connection[Any], settings: Settings) -> bool:
    """A worker's listening connection on ``settings``' schema runs a statement that waits
    for a lock (a claim, held up by a test)."""
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE "
        "'pgqueue-sync:listen%%' AND wait_event_type = 'Lock' AND strpos(query, %s) > 0",
        (settings.schema,),
    ).fetchone()
    return row is not None and row[0] == 1


def idle(qm: QueueManager, runner: Start, **kwargs: Any) -> tuple[Runner, Claims]:
    claims = Claims()
    qm.add_hooks(claims)
    kwargs.setdefault("dequeue_timeout", 3600)
    kwargs.setdefault("retry_timer", None)
    return runner(qm, **kwargs), claims


def test_an_idle_worker_claims_on_its_listeners_thread(qm: QueueManager, runner: Start) -> None:
    ran = threading.Event()

    @qm.entrypoint("wake")
    def wake(job: Job) -> None:
        ran.set()

    r, claims = idle(qm, runner)
    assert eventually(claims.asleep, FAST)
    [job_id] = qm.queries.enqueue("wake", None)
    assert ran.wait(FAST)
    r.stop()
    assert claims.made == [(LISTENER_THREAD, [job_id])]
    [result] = qm.queries.wait_for([job_id], timeout=FAST)
    assert result.status is JobStatus.SUCCESSFUL


def test_a_deferred_job_enqueued_while_idle_runs_when_due(qm: QueueManager, runner: Start) -> None:
    # The listener's claim finds nothing due: the fetch loop must size its sleep again
    # (to the job's due time), or the job waits for the idle timeout, an hour.
    ran = threading.Event()

    @qm.entrypoint("later")
    def later(job: Job) -> None:
        ran.set()

    r, claims = idle(qm, runner)
    assert eventually(claims.asleep, FAST)
    qm.queries.enqueue("later", None, execute_after=timedelta(seconds=0.5))
    assert ran.wait(FAST), "a deferred job enqueued while the worker slept never ran"
    r.stop()


def test_a_full_claim_on_the_listener_leaves_the_rest_to_the_fetch_loop(
    qm: QueueManager, runner: Start
) -> None:
    # Claims of two, in a buffer of ten (the room the jobs free never reaches the buffer's
    # watermark), and the first two jobs held until the third runs (the worker never falls
    # idle): only the listener's word wakes the fetch loop for the jobs beyond its claim.
    third_started = threading.Event()
    done = threading.Semaphore(0)

    @qm.entrypoint("many")
    def many(job: Job) -> None:
        if job.payload == b"held":
            third_started.wait(GUARD)
        elif job.payload == b"third":
            third_started.set()
        done.release()

    r, claims = idle(qm, runner, batch_size=2, buffer_size=10, workers=4)
    assert eventually(claims.asleep, FAST)
    ids = qm.queries.enqueue(["many"] * 5, [b"held", b"held", b"third", None, None])
    assert third_started.wait(FAST), "the jobs beyond the listener's full claim never ran"
    for _ in ids:
        assert done.acquire(timeout=FAST)
    r.stop()
    assert claims.made[0] == (LISTENER_THREAD, ids[:2])
    assert sorted(i for _, claimed in claims.made for i in claimed) == ids


def test_jobs_the_listener_claims_are_not_held_back_by_a_long_one(
    qm: QueueManager, runner: Start, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Short handlers (a put then wakes a single thread: the awake ones take the rest), then
    # two jobs in one claim of the listener, the first of which runs long: the second needs
    # a thread of its own. The fetch loop, which nudges sleeping threads when buffered jobs
    # wait, sleeps for an hour, as does an idle handler thread before it looks at the
    # buffer again: the listener must nudge them.
    monkeypatch.setattr(runner_module, "TAKE_TIMEOUT", 3600.0)
    second_started = threading.Event()
    warm = threading.Semaphore(0)

    @qm.entrypoint("quick")
    def quick(job: Job) -> None:
        warm.release()

    @qm.entrypoint("pair")
    def pair(job: Job) -> None:
        if job.payload == b"second":
            second_started.set()
        else:
            second_started.wait(GUARD)

    r, claims = idle(qm, runner, workers=2)
    for _ in qm.queries.enqueue(["quick"] * 40, [None] * 40):
        assert warm.acquire(timeout=FAST)
    assert eventually(claims.asleep, FAST)
    assert claims.worker is not None
    assert claims.worker.buffer.short_jobs(), "the handlers' durations are not yet short"
    ids = qm.queries.enqueue(["pair", "pair"], [b"first", b"second"])
    assert second_started.wait(FAST), "the second job of the listener's claim was not nudged"
    r.stop()
    assert (LISTENER_THREAD, ids) in claims.made


def test_the_shutdown_waits_for_a_claim_under_way_on_the_listener(
    qm: QueueManager,
    runner: Start,
    conn: psycopg.Connection[Any],
    dsn: str,
    settings: Settings,
) -> None:
    # The listener's claim is held up by a lock on the paused entrypoints' table, which
    # every claim reads; the worker is asked to stop meanwhile. Its shutdown (which releases
    # the buffered jobs, then closes the buffer) must not begin until that claim is over,
    # or the job the claim takes is left picked by a worker that is gone.
    ran = threading.Event()

    @qm.entrypoint("late")
    def late(job: Job) -> None:
        ran.set()

    r, claims = idle(qm, runner, heartbeat_interval=600)
    assert eventually(claims.asleep, FAST)
    paused = settings.ident("paused").as_string(None)
    with psycopg.connect(dsn) as blocker:
        blocker.execute(f"LOCK TABLE {paused} IN ACCESS EXCLUSIVE MODE")
        [job_id] = qm.queries.enqueue("late", None)

        assert eventually(lambda: listener_waits_on_a_lock(conn, settings), FAST)
        qm.alive = False
        assert claims.stop_seen_event.wait(FAST)
        # A bounded wait for what must not happen: the shutdown beginning while the claim
        # is under way (without the wait for it, it begins within milliseconds).
        assert not claims.shutting_down_event.wait(1.0)
        blocker.rollback()
    r.join()
    assert claims.shutting_down_event.is_set()
    assert claims.made == [(LISTENER_THREAD, [job_id])]
    # Run during the shutdown (buffered jobs finish), or given back: never left picked.
    left = qm.queries.get_jobs([job_id])
    if ran.is_set():
        assert left == []
        [result] = qm.queries.wait_for([job_id], timeout=FAST)
        assert result.status is JobStatus.SUCCESSFUL
    else:
        assert [job.status for job in left] == [JobStatus.QUEUED]


def test_a_claim_stalled_on_the_listeners_connection_is_cut(
    dsn: str, settings: Settings, runner: Start, conn: psycopg.Connection[Any]
) -> None:
    # The listener cannot watch its own connection while it claims on it (it watches the
    # others'): the flusher does. A claim held up past the driver's stall_timeout (here by a
    # lock on its entrypoint's limits row, which nothing else of the worker touches) has its
    # connection cut; the listener then listens anew and the fetch loop claims the job.
    qm = QueueManager(PsycopgDriver(dsn, stall_timeout=1.0), settings=settings)
    qm.queries.install()
    reconnected = threading.Event()
    ran = threading.Event()

    class Reconnects(WorkerHooks):
        def reconnected(self, connection: str) -> None:
            if connection == "listen":
                reconnected.set()

    @qm.entrypoint("stalled", concurrency_limit=5)
    def stalled(job: Job) -> None:
        ran.set()

    qm.add_hooks(Reconnects())
    r, claims = idle(qm, runner, heartbeat_interval=0.2)
    try:
        assert eventually(claims.asleep, FAST)
        limits = settings.ident("limits").as_string(None)
        with psycopg.connect(dsn) as blocker:
            blocker.execute(f"SELECT FROM {limits} WHERE entrypoint = 'stalled' FOR UPDATE")
            qm.queries.enqueue("stalled", None)
            assert eventually(lambda: listener_waits_on_a_lock(conn, settings), FAST)
            assert reconnected.wait(FAST), "the stalled claim's connection was not cut"
            blocker.rollback()
        assert ran.wait(FAST)
        r.stop()
    finally:
        qm.driver.close()


def test_every_event_of_a_packet_is_handled_when_one_asks_for_a_claim(
    qm: QueueManager, runner: Start, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    # One transaction's notifications reach the listener together: an insert (on which the
    # listener claims) and, after it, a cancellation. The listener leaves its wait for
    # notifications (to claim) only at the end of the packet, whose rest would be lost with
    # the wait: the cancellation reaches the running handler at once, not with the next
    # heartbeat (ten minutes away).
    started = threading.Event()
    saw_cancel = threading.Event()

    @qm.entrypoint("long")
    def long(job: Job, ctx: Context) -> None:
        started.set()
        if ctx.cancelled.wait(GUARD):
            saw_cancel.set()
        ctx.check()

    [job_id] = qm.queries.enqueue("long", None)
    r, claims = idle(qm, runner, heartbeat_interval=600)
    assert started.wait(FAST)
    assert eventually(claims.asleep, FAST)
    jobs = settings.ident("jobs").as_string(None)
    with conn.transaction():
        conn.execute(f"UPDATE {jobs} SET cancel_requested = true WHERE id = %s", (job_id,))
        for event in (events.Insert(), events.Cancel((job_id,))):
            conn.execute("SELECT pg_notify(%s, %s)", (settings.channel, events.encode(event)))
    assert saw_cancel.wait(FAST), "the cancellation after an insert in one packet was lost"
    [result] = qm.queries.wait_for([job_id], timeout=FAST)
    r.stop()
    assert result.status is JobStatus.CANCELED


def test_the_listener_claims_only_when_a_whole_claim_fits(qm: QueueManager, runner: Start) -> None:
    # As the fetch loop: no claim while the buffer has no room for a whole one (claims of
    # two in a buffer of two, one thread). Job A runs and holds the thread; B, claimed by
    # the listener alone, waits in the buffer; C must then wait in the queue, not be
    # claimed into the last slot.
    release = threading.Event()
    ran: list[bytes | None] = []
    all_ran = threading.Semaphore(0)

    @qm.entrypoint("slot")
    def slot(job: Job) -> None:
        if job.payload == b"A":
            release.wait(GUARD)
        ran.append(job.payload)
        all_ran.release()

    r, claims = idle(qm, runner, workers=1, batch_size=2, buffer_size=2)
    assert eventually(claims.asleep, FAST)
    [a] = qm.queries.enqueue("slot", b"A")
    assert eventually(lambda: len(claims.made) == 1, FAST)
    [b] = qm.queries.enqueue("slot", b"B")
    assert eventually(lambda: len(claims.made) == 2, FAST)
    assert claims.made == [(LISTENER_THREAD, [a]), (LISTENER_THREAD, [b])]
    [c] = qm.queries.enqueue("slot", b"C")
    # A bounded wait for what must not happen: C claimed into the buffer's last slot (the
    # listener hears C's NOTIFY within milliseconds).
    assert not eventually(lambda: len(claims.made) > 2, 1.0)
    release.set()
    for _ in range(3):
        assert all_ran.acquire(timeout=FAST)
    r.stop()
    assert ran == [b"A", b"B", b"C"]
    assert [jobs for _, jobs in claims.made] == [[a], [b], [c]]
    assert claims.made[2][0] != LISTENER_THREAD  # the fetch loop's, woken by the room
