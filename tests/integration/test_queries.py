from __future__ import annotations

import threading
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest

from pgqueue_sync import (
    ConfigurationError,
    InvalidEntrypointError,
    InvalidPayloadError,
    JobStatus,
    ManualClock,
    PayloadTooLargeError,
    PsycopgDriver,
    Queries,
    QueueManager,
    Settings,
    UnknownEntrypointError,
)
from pgqueue_sync.models import Outcome
from pgqueue_sync.queries import COPY_THRESHOLD
from tests.conftest import SqlQueries, eventually


@pytest.fixture
def q(driver: PsycopgDriver, settings: Settings) -> SqlQueries:
    queries = SqlQueries(driver, settings)
    queries.install()
    return queries


def count(q: Queries) -> int:
    return sum(s.count for s in q.queue_size())


def test_enqueue_scalar_and_lists_return_ids_in_order(q: SqlQueries) -> None:
    [one] = q.enqueue("a", b"p")
    ids = q.enqueue(["a", "b", "a"], [b"1", b"2", None], [1, 2, 3])
    assert one < ids[0] < ids[1] < ids[2]
    jobs = {j.id: j for j in q.get_jobs([one, *ids])}
    assert jobs[one].payload == b"p"
    assert [(jobs[i].entrypoint, jobs[i].payload, jobs[i].priority) for i in ids] == [
        ("a", b"1", 1),
        ("b", b"2", 2),
        ("a", None, 3),
    ]
    assert all(j.status is JobStatus.QUEUED and j.attempts == 0 for j in jobs.values())
    assert q.enqueue([], []) == []


def test_large_lists_go_through_copy_with_the_same_result(
    driver: PsycopgDriver, settings: Settings
) -> None:
    clock = ManualClock()
    q = SqlQueries(driver, settings, clock=clock)
    q.install()
    n = COPY_THRESHOLD * 2
    at = clock.now() + timedelta(days=1)
    payloads = [f"job {i}".encode() for i in range(n)]
    whens: list[timedelta | datetime | None] = [
        [None, timedelta(seconds=i), at][i % 3] for i in range(n)
    ]
    ids = q.enqueue(
        ["bulk"] * n,
        payloads,
        priority=[i % 5 for i in range(n)],
        execute_after=whens,
        headers={"t": 1},
    )
    # ids in the order given, each the id of its own input, ascending as inserts return them
    assert ids == sorted(ids) == list(range(ids[0], ids[0] + n))
    jobs = {j.id: j for j in q.get_jobs(ids)}
    for i, job_id in enumerate(ids):
        job = jobs[job_id]
        assert (job.payload, job.priority, job.headers) == (payloads[i], i % 5, {"t": 1})
        due = [clock.now(), clock.now() + timedelta(seconds=i), at][i % 3]
        assert job.execute_after == due, i


def test_scalars_broadcast_and_lengths_must_match(q: SqlQueries) -> None:
    ids = q.enqueue(["a", "a"], [b"x", b"y"], priority=7)
    assert {j.priority for j in q.get_jobs(ids)} == {7}
    with pytest.raises(ConfigurationError, match="same length"):
        q.enqueue(["a", "a"], [b"x"])
    with pytest.raises(ConfigurationError, match="list of entrypoints"):
        q.enqueue("a", [b"x", b"y"])


def test_execute_after_defers_jobs(q: SqlQueries) -> None:
    later = datetime.now(timezone.utc) + timedelta(hours=1)
    ids = q.enqueue(["a", "a", "a"], [None] * 3, execute_after=[None, timedelta(hours=1), later])
    worker = uuid.uuid4()
    claimed = q.dequeue(10, ["a"], worker)
    assert [j.id for j in claimed] == [ids[0]]
    due = q.next_due(["a"])
    assert due is not None
    assert 3500 < due <= 3600
    with pytest.raises(ConfigurationError, match="naive"):
        q.enqueue("a", None, execute_after=datetime.now())
    with pytest.raises(ConfigurationError, match="timedelta"):
        q.enqueue("a", None, execute_after=5)  # type: ignore[arg-type]


def test_bad_input_is_refused_before_anything_is_written(q: SqlQueries) -> None:
    with pytest.raises(InvalidPayloadError, match="encode"):
        q.enqueue("a", "text")  # type: ignore[arg-type]
    with pytest.raises(InvalidPayloadError):
        q.enqueue(["a", "a"], [b"ok", 12])  # type: ignore[list-item]
    big = b"x" * (q.settings.max_payload_bytes + 1)
    with pytest.raises(PayloadTooLargeError, match="max_payload_bytes"):
        q.enqueue(["a", "a"], [b"fine", big])
    for name in ["bad name", "quote'", "semi;colon", "ünïcode", ""]:
        with pytest.raises(InvalidEntrypointError):
            q.enqueue(name, b"x")
    with pytest.raises(ConfigurationError, match="32-bit"):
        q.enqueue("a", b"x", priority=2**31)
    with pytest.raises(ConfigurationError, match="32-bit"):
        q.enqueue("a", b"x", priority=True)
    assert count(q) == 0


def test_unknown_entrypoints_are_refused_when_handlers_are_registered(
    driver: PsycopgDriver, settings: Settings
) -> None:
    qm = QueueManager(driver, settings=settings)
    qm.queries.install()
    qm.queries.enqueue("anything", b"")  # no handlers registered: a pure producer

    @qm.entrypoint("known")
    def handler(job: object) -> None:
        pass

    with pytest.raises(UnknownEntrypointError, match="known"):
        qm.queries.enqueue(["known", "typo"], [b"", b""])
    assert count(qm.queries) == 1
    producer = QueueManager(driver, settings=settings, check_entrypoints=False)
    producer.entrypoint("other")(handler)
    producer.queries.enqueue("elsewhere", b"")
    assert count(qm.queries) == 2


def test_dequeue_orders_by_priority_then_fifo_and_skips_other_entrypoints(q: SqlQueries) -> None:
    ids = q.enqueue(["a", "a", "b", "a", "a"], [None] * 5, [0, 5, 9, 5, 1])
    # Enqueued last but due an hour ago: first among its priority (FIFO by due time).
    [overdue] = q.enqueue("a", None, 5, datetime.now(timezone.utc) - timedelta(hours=1))
    worker = uuid.uuid4()
    # One at a time, so the statement's own order decides (a claim of all would be sorted
    # after the fact).
    claimed = [job for _ in range(5) for job in q.dequeue(1, ["a"], worker)]
    assert [j.id for j in claimed] == [overdue, ids[1], ids[3], ids[4], ids[0]]
    assert all(j.status is JobStatus.PICKED and j.worker_id == worker for j in claimed)
    assert all(j.attempts == 1 for j in claimed)
    assert q.dequeue(10, ["a"], worker) == []


@pytest.mark.parametrize("locked", ["queued", "stale"])
def test_a_claim_skips_rows_another_claim_has_locked(
    locked: str, driver: PsycopgDriver, settings: Settings, dsn: str
) -> None:
    clock = ManualClock()
    q = SqlQueries(driver, settings, clock=clock)
    q.install()
    retry_timer = timedelta(seconds=30)
    first, second = q.enqueue(["a", "a"], [None, None])
    if locked == "stale":
        q.dequeue(2, ["a"], uuid.uuid4(), retry_timer)  # a worker that then dies
        clock.advance(retry_timer * 2)
    table = settings.ident("jobs").as_string(None)
    # A claim in flight elsewhere: it holds the first row's lock until it commits.
    with psycopg.connect(dsn) as other, psycopg.connect(dsn, autocommit=True) as claimer:
        other.execute(f"SELECT id FROM {table} WHERE id = %s FOR UPDATE", (first,))
        claimer.execute("SET statement_timeout = '5s'")  # waiting on the lock fails the test
        jobs = SqlQueries(PsycopgDriver(claimer), settings, clock=clock).dequeue(
            2, ["a"], uuid.uuid4(), retry_timer
        )
        assert [j.id for j in jobs] == [second]
        other.rollback()


def test_stale_jobs_are_rescued_oldest_first_before_queued_ones(
    driver: PsycopgDriver, settings: Settings
) -> None:
    clock = ManualClock()
    q = SqlQueries(driver, settings, clock=clock)
    q.install()
    retry_timer = timedelta(seconds=30)
    older, newer, other_entrypoint, failed = q.enqueue(["a", "a", "b", "a"], [None] * 4)
    dead = uuid.uuid4()
    q.dequeue(1, ["a"], dead, retry_timer)
    clock.advance(5)
    q.dequeue(1, ["a"], dead, retry_timer)
    q.dequeue(1, ["b"], dead, retry_timer)
    [job] = q.dequeue(1, ["a"], dead, retry_timer)
    q.complete(dead, [Outcome(failed, job.attempts, JobStatus.FAILED, 0.0)])
    [queued] = q.enqueue("a", None)
    clock.advance(retry_timer * 2)
    rescuer = uuid.uuid4()
    # Oldest heartbeat first, then the other stale one, then queued jobs; never a failed
    # job, nor one of an entrypoint the claimer does not handle.
    claimed = [j.id for _ in range(4) for j in q.dequeue(1, ["a"], rescuer, retry_timer)]
    assert claimed == [older, newer, queued]
    # A claim stamps a fresh heartbeat: the rescuer's jobs are not stale in turn.
    assert q.dequeue(10, ["a"], uuid.uuid4(), retry_timer) == []
    jobs = {j.id: j for j in q.get_jobs([older, other_entrypoint, failed])}
    assert (jobs[older].worker_id, jobs[older].attempts) == (rescuer, 2)
    assert (jobs[other_entrypoint].status, jobs[other_entrypoint].worker_id) == (
        JobStatus.PICKED,
        dead,
    )
    assert (jobs[failed].status, jobs[failed].worker_id) == (JobStatus.FAILED, None)


def test_concurrent_claims_never_overlap(q: SqlQueries, dsn: str, settings: Settings) -> None:
    q.enqueue(["a"] * 200, [None] * 200)
    others = [SqlQueries(PsycopgDriver(dsn), settings) for _ in range(4)]
    claimed: list[int] = []
    for _ in range(20):
        for other in others:
            claimed += [j.id for j in other.dequeue(7, ["a"], uuid.uuid4())]
    assert len(claimed) == len(set(claimed)) == 200
    for other in others:
        other.driver.close()


def test_complete_is_fenced_by_worker_and_attempt(q: SqlQueries) -> None:
    [job_id] = q.enqueue("a", b"")
    w1 = uuid.uuid4()
    [job] = q.dequeue(1, ["a"], w1)
    assert (
        q.complete(
            uuid.uuid4(), [Outcome(job_id, job.attempts, JobStatus.SUCCESSFUL, 0.1)]
        ).recorded
        == set()
    )
    assert (
        q.complete(w1, [Outcome(job_id, job.attempts + 1, JobStatus.SUCCESSFUL, 0.1)]).recorded
        == set()
    )
    assert q.complete(
        w1, [Outcome(job_id, job.attempts, JobStatus.SUCCESSFUL, 0.1, result=b"r")]
    ).recorded == {job_id}
    assert q.get_jobs([job_id]) == []
    [entry] = q.log(job_ids=[job_id])
    assert entry.status is JobStatus.SUCCESSFUL
    assert entry.result == b"r"
    assert entry.worker_id == w1
    assert entry.duration == timedelta(seconds=0.1)
    # A second completion of the same attempt changes nothing.
    assert (
        q.complete(w1, [Outcome(job_id, job.attempts, JobStatus.EXCEPTION, 0.1)]).recorded == set()
    )
    assert len(q.log(job_ids=[job_id])) == 1


def test_stale_picked_jobs_are_repicked_only_after_retry_timer(
    driver: PsycopgDriver, settings: Settings
) -> None:
    clock = ManualClock()
    q = SqlQueries(driver, settings, clock=clock)
    q.install()
    [job_id] = q.enqueue("a", b"")
    dead, alive = uuid.uuid4(), uuid.uuid4()
    [first] = q.dequeue(1, ["a"], dead, timedelta(seconds=30))
    clock.advance(29)
    assert q.dequeue(1, ["a"], alive, timedelta(seconds=30)) == []
    clock.advance(2)
    [again] = q.dequeue(1, ["a"], alive, timedelta(seconds=30))
    assert again.id == job_id
    assert again.attempts == first.attempts + 1
    assert again.worker_id == alive
    # The presumed-dead worker comes back: its outcome is fenced out.
    assert (
        q.complete(dead, [Outcome(job_id, first.attempts, JobStatus.SUCCESSFUL, 1)]).recorded
        == set()
    )
    assert q.complete(
        alive, [Outcome(job_id, again.attempts, JobStatus.SUCCESSFUL, 1)]
    ).recorded == {job_id}


def test_heartbeat_keeps_held_jobs_from_being_repicked(
    driver: PsycopgDriver, settings: Settings
) -> None:
    clock = ManualClock()
    q = SqlQueries(driver, settings, clock=clock)
    q.install()
    [job_id] = q.enqueue("a", b"")
    worker = uuid.uuid4()
    q.dequeue(1, ["a"], worker, timedelta(seconds=30))
    for _ in range(5):
        clock.advance(20)
        assert q.heartbeat(worker, {job_id}) == {job_id: False}
        assert q.dequeue(1, ["a"], uuid.uuid4(), timedelta(seconds=30)) == []
    assert q.heartbeat(uuid.uuid4(), {job_id}) == {}


def test_release_requeues_and_keeps_attempts_of_unstarted_jobs(q: SqlQueries) -> None:
    ids = q.enqueue(["a", "a"], [None, None])
    worker = uuid.uuid4()
    q.dequeue(2, ["a"], worker)
    assert q.release(uuid.uuid4(), set(ids), set(ids)) == set()  # only the holder releases
    assert q.release(worker, set(ids), unstarted={ids[0]}) == set(ids)
    jobs = {j.id: j for j in q.get_jobs(ids)}
    assert jobs[ids[0]].status is JobStatus.QUEUED
    assert jobs[ids[0]].attempts == 0
    assert jobs[ids[1]].status is JobStatus.QUEUED
    assert jobs[ids[1]].attempts == 1
    assert jobs[ids[0]].worker_id is None


def test_transactional_enqueue_follows_the_callers_transaction(q: SqlQueries, dsn: str) -> None:
    with psycopg.connect(dsn) as tx:
        q.enqueue("a", b"rolled back", connection=tx)
        tx.rollback()
        q.enqueue("a", b"committed", connection=tx)
        tx.commit()
    assert [j.payload for j in q.get_jobs(range(1, 100))] == [b"committed"]


def test_clear_queue_and_queue_size(q: SqlQueries) -> None:
    q.enqueue(["a", "a", "b"], [None] * 3)
    q.dequeue(1, ["b"], uuid.uuid4())
    sizes = {(s.entrypoint, s.status): s.count for s in q.queue_size()}
    assert sizes == {("a", JobStatus.QUEUED): 2, ("b", JobStatus.PICKED): 1}
    assert q.clear_queue("a") == 2
    assert q.clear_queue() == 0
    assert count(q) == 1


def test_log_filters(q: SqlQueries, conn: psycopg.Connection[Any]) -> None:
    ids = q.enqueue(["a", "b"], [None, None])
    worker = uuid.uuid4()
    jobs = q.dequeue(2, ["a", "b"], worker)
    q.complete(
        worker,
        [
            Outcome(jobs[0].id, 1, JobStatus.SUCCESSFUL, 0),
            Outcome(jobs[1].id, 1, JobStatus.EXCEPTION, 0, traceback="Traceback..."),
        ],
    )
    assert {e.job_id for e in q.log()} == set(ids)
    [failed] = q.log(status="exception")
    assert failed.traceback == "Traceback..."
    assert [e.entrypoint for e in q.log(entrypoint="a")] == ["a"]


def test_recorded_finds_only_the_attempts_a_worker_wrote(q: SqlQueries) -> None:
    [job_id] = q.enqueue("a", None)
    worker = uuid.uuid4()
    [first] = q.dequeue(1, ["a"], worker)
    retry = Outcome(job_id, first.attempts, JobStatus.QUEUED, 0.0, traceback="again")
    assert q.complete(worker, [retry]).retried == {job_id}
    [second] = q.dequeue(1, ["a"], worker)
    done = Outcome(job_id, second.attempts, JobStatus.SUCCESSFUL, 0.0)
    assert q.complete(worker, [done]).finished == {job_id}
    assert q.recorded(worker, [done]) == {job_id}
    assert q.recorded(worker, [retry]) == set()  # a retry leaves no log row
    assert q.recorded(uuid.uuid4(), [done]) == set()


def test_a_completion_that_waited_for_a_repick_is_fenced_out(
    driver: PsycopgDriver, settings: Settings, dsn: str
) -> None:
    """A late completion blocked behind the transaction that re-picks its job must see the
    re-pick once it commits (the fence is re-checked on the locked row), not its snapshot."""
    clock = ManualClock()
    q = SqlQueries(driver, settings, clock=clock)
    q.install()
    retry_timer = timedelta(seconds=30)
    [job_id] = q.enqueue("a", None)
    slow = uuid.uuid4()
    [job] = q.dequeue(1, ["a"], slow, retry_timer)
    clock.advance(retry_timer * 2)
    recorded: list[set[int]] = []
    rescuer = uuid.uuid4()
    with (
        psycopg.connect(dsn, autocommit=True) as rescuer_conn,
        psycopg.connect(dsn, autocommit=True) as late,
        psycopg.connect(dsn, autocommit=True) as observer,
    ):
        late_q = SqlQueries(PsycopgDriver(late), settings, clock=clock)
        (pid,) = late.execute("SELECT pg_backend_pid()").fetchone() or (0,)
        outcome = Outcome(job_id, job.attempts, JobStatus.SUCCESSFUL, 0.0)
        thread = threading.Thread(
            target=lambda: recorded.append(late_q.complete(slow, [outcome]).recorded)
        )
        with rescuer_conn.transaction():  # the re-pick commits at the end of this block
            repicked = SqlQueries(PsycopgDriver(rescuer_conn), settings, clock=clock).dequeue(
                1, ["a"], rescuer, retry_timer
            )
            assert [j.id for j in repicked] == [job_id]
            thread.start()
            assert eventually(
                lambda: (
                    observer.execute(
                        "SELECT wait_event_type = 'Lock' FROM pg_stat_activity WHERE pid = %s",
                        (pid,),
                    ).fetchone()
                    == (True,)
                )
            ), "the late completion never waited for the re-pick's lock"
        thread.join(10)
        assert not thread.is_alive()
    assert recorded == [set()]
    [row] = q.get_jobs([job_id])
    assert (row.status, row.worker_id, row.attempts) == (JobStatus.PICKED, rescuer, 2)
    assert q.log(job_ids=[job_id]) == []
