from __future__ import annotations

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
from pgqueue_sync.queries import COPY_THRESHOLD, Outcome


@pytest.fixture
def q(driver: PsycopgDriver, settings: Settings) -> Queries:
    queries = Queries(driver, settings)
    queries.install()
    return queries


def count(q: Queries) -> int:
    return sum(s.count for s in q.queue_size())


def test_enqueue_scalar_and_lists_return_ids_in_order(q: Queries) -> None:
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


def test_large_lists_go_through_copy_with_the_same_result(q: Queries) -> None:
    n = COPY_THRESHOLD * 2
    payloads = [f"job {i}".encode() for i in range(n)]
    ids = q.enqueue(["bulk"] * n, payloads, priority=[i % 5 for i in range(n)], headers={"t": 1})
    assert len(ids) == n == len(set(ids))
    jobs = {j.id: j for j in q.get_jobs(ids)}
    for i, job_id in enumerate(ids):
        assert jobs[job_id].payload == payloads[i]
        assert jobs[job_id].priority == i % 5
        assert jobs[job_id].headers == {"t": 1}


def test_scalars_broadcast_and_lengths_must_match(q: Queries) -> None:
    ids = q.enqueue(["a", "a"], [b"x", b"y"], priority=7)
    assert {j.priority for j in q.get_jobs(ids)} == {7}
    with pytest.raises(ConfigurationError, match="same length"):
        q.enqueue(["a", "a"], [b"x"])
    with pytest.raises(ConfigurationError, match="list of entrypoints"):
        q.enqueue("a", [b"x", b"y"])


def test_execute_after_defers_jobs(q: Queries) -> None:
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


def test_bad_input_is_refused_before_anything_is_written(q: Queries) -> None:
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


def test_dequeue_orders_by_priority_then_fifo_and_skips_other_entrypoints(q: Queries) -> None:
    ids = q.enqueue(["a", "a", "b", "a", "a"], [None] * 5, [0, 5, 9, 5, 1])
    worker = uuid.uuid4()
    claimed = q.dequeue(10, ["a"], worker)
    assert [j.id for j in claimed] == [ids[1], ids[3], ids[4], ids[0]]
    assert all(j.status is JobStatus.PICKED and j.worker_id == worker for j in claimed)
    assert all(j.attempts == 1 for j in claimed)
    assert q.dequeue(10, ["a"], worker) == []


def test_concurrent_claims_never_overlap(q: Queries, dsn: str, settings: Settings) -> None:
    q.enqueue(["a"] * 200, [None] * 200)
    others = [Queries(PsycopgDriver(dsn), settings) for _ in range(4)]
    claimed: list[int] = []
    for _ in range(20):
        for other in others:
            claimed += [j.id for j in other.dequeue(7, ["a"], uuid.uuid4())]
    assert len(claimed) == len(set(claimed)) == 200
    for other in others:
        other.driver.close()


def test_complete_is_fenced_by_worker_and_attempt(q: Queries) -> None:
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
    q = Queries(driver, settings, clock=clock)
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
    q = Queries(driver, settings, clock=clock)
    q.install()
    [job_id] = q.enqueue("a", b"")
    worker = uuid.uuid4()
    q.dequeue(1, ["a"], worker, timedelta(seconds=30))
    for _ in range(5):
        clock.advance(20)
        assert q.heartbeat(worker, {job_id}) == {job_id: False}
        assert q.dequeue(1, ["a"], uuid.uuid4(), timedelta(seconds=30)) == []
    assert q.heartbeat(uuid.uuid4(), {job_id}) == {}


def test_release_requeues_and_keeps_attempts_of_unstarted_jobs(q: Queries) -> None:
    ids = q.enqueue(["a", "a"], [None, None])
    worker = uuid.uuid4()
    q.dequeue(2, ["a"], worker)
    assert q.release(worker, set(ids), unstarted={ids[0]}) == set(ids)
    jobs = {j.id: j for j in q.get_jobs(ids)}
    assert jobs[ids[0]].status is JobStatus.QUEUED
    assert jobs[ids[0]].attempts == 0
    assert jobs[ids[1]].status is JobStatus.QUEUED
    assert jobs[ids[1]].attempts == 1
    assert jobs[ids[0]].worker_id is None


def test_transactional_enqueue_follows_the_callers_transaction(q: Queries, dsn: str) -> None:
    with psycopg.connect(dsn) as tx:
        q.enqueue("a", b"rolled back", connection=tx)
        tx.rollback()
        q.enqueue("a", b"committed", connection=tx)
        tx.commit()
    assert [j.payload for j in q.get_jobs(range(1, 100))] == [b"committed"]


def test_clear_queue_and_queue_size(q: Queries) -> None:
    q.enqueue(["a", "a", "b"], [None] * 3)
    q.dequeue(1, ["b"], uuid.uuid4())
    sizes = {(s.entrypoint, s.status): s.count for s in q.queue_size()}
    assert sizes == {("a", JobStatus.QUEUED): 2, ("b", JobStatus.PICKED): 1}
    assert q.clear_queue("a") == 2
    assert q.clear_queue() == 0
    assert count(q) == 1


def test_log_filters(q: Queries, conn: psycopg.Connection[Any]) -> None:
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
