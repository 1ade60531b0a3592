"""Jobs whose worker is lost while running them: counted, and failed past ``max_lost``.

The claim SQL and the worker's steps, on a ManualClock; tests/faults/test_lost_workers.py
kills real worker processes.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta

import pytest

from pgqueue_sync import (
    ConfigurationError,
    Job,
    JobStatus,
    ManualClock,
    PsycopgDriver,
    QueueManager,
    Settings,
)
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.stepper import Stepper
from pgqueue_sync.models import JobId, Outcome
from tests.conftest import SqlQueries, engine
from tests.integration.stepping import stepped_workers

RETRY = timedelta(seconds=30)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def cq(driver: PsycopgDriver, settings: Settings, clock: ManualClock) -> SqlQueries:
    queries = SqlQueries(driver, settings, clock=clock)
    queries.install()
    return queries


def state(queries: SqlQueries, job_id: int) -> tuple[int, int, int, bool]:
    """(attempts, rescued, lost, started recorded) of a job in the table."""
    [job] = queries.get_jobs([job_id])
    return job.attempts, job.rescued, job.lost, job.started is not None


def test_a_stale_claim_rescues_the_job_and_counts_a_loss_only_if_its_handler_started(
    cq: SqlQueries, clock: ManualClock
) -> None:
    started, buffered = cq.enqueue(["e", "e"], [None, None])
    dead = uuid.uuid4()
    claimed = cq.dequeue(2, ["e"], dead, RETRY)
    assert [(j.rescued, j.lost, j.started) for j in claimed] == [(0, 0, None)] * 2
    assert cq.mark_started(dead, started, 1)
    assert state(cq, started) == (1, 0, 0, True)
    clock.advance(RETRY + timedelta(seconds=1))  # the worker died: its heartbeat is stale

    rescuer = uuid.uuid4()
    again = {j.id: j for j in cq.dequeue(2, ["e"], rescuer, RETRY)}
    assert (again[started].attempts, again[started].rescued, again[started].lost) == (2, 1, 1)
    assert (again[buffered].attempts, again[buffered].rescued, again[buffered].lost) == (2, 1, 0)
    assert again[started].started is None  # the new attempt has not started yet
    # Recording a start is fenced by worker and attempt, like an outcome.
    assert not cq.mark_started(dead, buffered, 1)
    assert not cq.mark_started(rescuer, buffered, 1)
    assert cq.mark_started(rescuer, buffered, 2)
    [job] = cq.get_jobs([buffered])
    assert job.started == clock.now()


def test_a_fresh_claim_never_counts_a_loss_and_release_forgets_the_start(
    cq: SqlQueries, clock: ManualClock
) -> None:
    [job_id] = cq.enqueue("e", None)
    worker = uuid.uuid4()
    cq.dequeue(1, ["e"], worker, RETRY)
    assert cq.mark_started(worker, job_id, 1)
    cq.release(worker, {job_id}, set())  # a graceful stop past its deadline
    assert state(cq, job_id) == (1, 0, 0, False)
    clock.advance(RETRY * 2)
    [job] = cq.dequeue(1, ["e"], uuid.uuid4(), RETRY)
    assert (job.attempts, job.rescued, job.lost) == (2, 0, 0)


def test_requeue_gives_a_failed_job_a_clean_slate(cq: SqlQueries, clock: ManualClock) -> None:
    [job_id] = cq.enqueue("e", None)
    for _ in range(2):
        worker = uuid.uuid4()
        [job] = cq.dequeue(1, ["e"], worker, RETRY)
        cq.mark_started(worker, job_id, job.attempts)
        clock.advance(RETRY * 2)
    worker = uuid.uuid4()
    [job] = cq.dequeue(1, ["e"], worker, RETRY)
    assert (job.rescued, job.lost) == (2, 2)
    cq.mark_started(worker, job_id, job.attempts)
    cq.complete(worker, [Outcome(job_id, job.attempts, JobStatus.FAILED, 0.1, "boom")])
    assert cq.requeue([job_id]) == [job_id]
    assert state(cq, job_id) == (0, 0, 0, False)


# -- the worker's steps ----------------------------------------------------------------------


@pytest.fixture
def cqm(driver: PsycopgDriver, settings: Settings, clock: ManualClock) -> QueueManager:
    manager = QueueManager(driver, settings=settings, clock=clock)
    manager.queries.install()
    return manager


@pytest.fixture
def make_worker(cqm: QueueManager) -> Iterator[Callable[[], Worker]]:
    """Workers built as run() builds them, driven one step at a time."""
    with stepped_workers(cqm, RETRY) as make:
        yield make


def test_only_the_batch_mate_that_had_started_is_charged_when_its_worker_is_lost(
    cqm: QueueManager, clock: ManualClock, make_worker: Callable[[], Worker]
) -> None:
    ran: list[tuple[int, int, int]] = []

    @cqm.entrypoint("e")
    def handler(job: Job) -> None:
        ran.append((job.id, job.rescued, job.lost))

    first, second, third = cqm.queries.enqueue(["e"] * 3, [None] * 3)
    make_worker().fetcher.fetch_once()  # a worker claims all three, and dies before running any
    clock.advance(RETRY * 2)
    rescuer = make_worker()
    jobs = rescuer.fetcher.fetch_once()
    assert [(j.id, j.rescued, j.lost) for j in jobs] == [(i, 1, 0) for i in (1, 2, 3)]
    rescuer.runner.run_job(jobs[0])  # ran (its start recorded first), then the worker died
    assert ran == [(first, 1, 0)]
    clock.advance(RETRY * 2)
    claimed = make_worker().fetcher.fetch_once()
    assert [(j.id, j.rescued, j.lost) for j in claimed] == [
        (first, 2, 1),  # its handler was running when its worker was lost
        (second, 2, 0),  # only buffered: never charged
        (third, 2, 0),
    ]


def test_a_job_whose_workers_were_lost_max_lost_times_fails_without_running(
    cqm: QueueManager, clock: ManualClock, make_worker: Callable[[], Worker]
) -> None:
    ran: list[int] = []

    @cqm.entrypoint("poison", max_lost=2)
    def poison(job: Job) -> None:
        ran.append(job.lost)

    [job_id] = cqm.queries.enqueue("poison", b"x")
    make_worker().fetcher.fetch_once()  # its first run: the loss cannot be told from a buffered job
    for lost in range(2):
        clock.advance(RETRY * 2)
        worker = make_worker()
        [job] = worker.fetcher.fetch_once()
        assert (job.rescued, job.lost) == (lost + 1, lost)
        with pytest.MonkeyPatch.context() as patch:
            # The handler starts (recorded), then takes its worker down with it.
            patch.setattr("pgqueue_sync.engine.runner.execute", _die)
            with pytest.raises(_WorkerDied):
                worker.runner.run_job(job)
    clock.advance(RETRY * 2)
    worker = make_worker()
    [job] = worker.fetcher.fetch_once()
    assert (job.rescued, job.lost) == (3, 2)
    outcome = worker.runner.run_job(job)
    assert ran == []
    assert outcome.status is JobStatus.FAILED
    message = "its worker was lost 2 times while running it (max_lost=2)"
    assert outcome.traceback == f"JobLostError: {message}\n"
    assert worker.flusher.flush() == {job_id}
    [failed] = cqm.queries.get_jobs([job_id])
    assert failed.status is JobStatus.FAILED
    assert failed.last_error == f"JobLostError: {message}\n"
    [entry] = cqm.queries.history(job_ids=[job_id])
    assert (entry.status, entry.attempts) == (JobStatus.FAILED, 4)
    assert worker.stats.failed == 1
    # Requeued, it runs again: a fresh count.
    cqm.queries.requeue([job_id])
    [job] = make_worker().fetcher.fetch_once()
    assert (job.rescued, job.lost) == (0, 0)


class _WorkerDied(BaseException):
    pass


def _die(*args: object, **kwargs: object) -> Outcome:
    raise _WorkerDied


def test_with_max_lost_none_a_job_runs_again_however_often_its_worker_is_lost(
    cqm: QueueManager, clock: ManualClock, make_worker: Callable[[], Worker]
) -> None:
    ran: list[int] = []

    @cqm.entrypoint("e", max_lost=None)
    def handler(job: Job) -> None:
        ran.append(job.lost)

    cqm.queries.enqueue("e", None)
    make_worker().fetcher.fetch_once()
    for _ in range(5):
        clock.advance(RETRY * 2)
        worker = make_worker()
        [job] = worker.fetcher.fetch_once()
        engine(cqm).mark_started(worker.id, job.id, job.attempts)
    clock.advance(RETRY * 2)
    worker = make_worker()
    [job] = worker.fetcher.fetch_once()
    worker.runner.run_job(job)
    assert ran == [5]


@pytest.mark.parametrize("value", [0, -1, True, 1.5, "3"])
def test_max_lost_must_be_a_positive_int_or_none(cqm: QueueManager, value: object) -> None:
    with pytest.raises(ConfigurationError, match="max_lost"):
        cqm.entrypoint("e", max_lost=value)  # type: ignore[arg-type]
    cqm.entrypoint("e1", max_lost=1)(lambda job: None)
    cqm.entrypoint("e2", max_lost=None)(lambda job: None)
    cqm.entrypoint("e3")(lambda job: None)
    assert [cqm.entrypoints[name].max_lost for name in ("e1", "e2", "e3")] == [1, None, 3]


def two_lost_while_running(
    cqm: QueueManager, clock: ManualClock, make_worker: Callable[[], Worker]
) -> list[JobId]:
    """Two jobs rescued once, whose handlers had then started when their worker was lost
    (counted on their next rescue); their ids."""
    ids = cqm.queries.enqueue(["e", "e"], [None, None])
    make_worker().fetcher.fetch_once()
    clock.advance(RETRY * 2)
    worker = make_worker()
    for job in worker.fetcher.fetch_once():  # both start, then this worker dies
        assert engine(cqm).mark_started(worker.id, job.id, job.attempts)
    return ids


def two_suspects(
    cqm: QueueManager, clock: ManualClock, make_worker: Callable[[], Worker]
) -> tuple[Worker, list[Job]]:
    """Two jobs that were running when a worker was lost (counted once), claimed together
    by a new worker."""
    ids = two_lost_while_running(cqm, clock, make_worker)
    clock.advance(RETRY * 2)
    worker = make_worker()
    jobs = worker.fetcher.fetch_once()
    assert [j.id for j in jobs] == ids
    return worker, jobs


def test_jobs_counted_as_lost_run_one_at_a_time_until_the_outcome_is_written(
    cqm: QueueManager, clock: ManualClock, make_worker: Callable[[], Worker]
) -> None:
    gates = {1: threading.Event(), 2: threading.Event()}
    entered: list[int] = []

    @cqm.entrypoint("e")
    def handler(job: Job) -> None:
        entered.append(job.id)
        assert gates[job.id].wait(20)

    worker, jobs = two_suspects(cqm, clock, make_worker)
    assert [(j.rescued, j.lost) for j in jobs] == [(2, 1), (2, 1)]
    first = threading.Thread(target=worker.runner.run_job, args=(jobs[0],))
    second = threading.Thread(target=worker.runner.run_job, args=(jobs[1],))
    first.start()
    second.start()
    gates[1].set()
    first.join(20)
    second.join(0.3)  # a guard: the second waits for the first's outcome to be written
    assert second.is_alive()
    assert entered == [1]
    assert worker.flusher.flush() == {1}
    gates[2].set()
    second.join(20)
    assert not second.is_alive()
    assert entered == [1, 2]
    assert worker.flusher.flush() == {2}


def test_a_job_waiting_to_run_alone_goes_back_to_the_queue_when_the_worker_stops(
    cqm: QueueManager, clock: ManualClock, make_worker: Callable[[], Worker]
) -> None:
    release_first = threading.Event()
    entered = threading.Event()

    @cqm.entrypoint("e")
    def handler(job: Job) -> None:
        entered.set()
        assert release_first.wait(20)

    worker, jobs = two_suspects(cqm, clock, make_worker)
    first = threading.Thread(target=worker.runner.run_job, args=(jobs[0],))
    first.start()
    assert entered.wait(20)
    worker.shutdown_event.set()
    outcome = worker.runner.run_job(jobs[1])  # returns at once: given back, not run
    assert outcome.status is JobStatus.CANCELED
    [job] = cqm.queries.get_jobs([jobs[1].id])
    assert (job.status, job.attempts, job.lost, job.started) == (
        JobStatus.QUEUED,
        jobs[1].attempts - 1,  # it did not start: the attempt is not used up
        1,
        None,
    )
    assert set(worker.ledger.held()) == {jobs[0].id}
    release_first.set()
    first.join(20)


def test_a_stepped_worker_runs_jobs_counted_as_lost_one_after_the_other(
    cqm: QueueManager, clock: ManualClock, make_worker: Callable[[], Worker]
) -> None:
    """drain() (a Stepper) has no flusher thread to write the first suspect's outcome while
    the second waits to run alone: it must write it itself, not wait for ever."""
    ran: list[int] = []

    @cqm.entrypoint("e")
    def handler(job: Job) -> None:
        ran.append(job.id)

    ids = two_lost_while_running(cqm, clock, make_worker)
    clock.advance(timedelta(minutes=5))  # stale for the stepper's retry_timer too

    steps: list[list[tuple[Job, Outcome]]] = []
    with Stepper(
        driver=cqm.driver, settings=cqm.settings, clock=clock, registry=cqm.entrypoints
    ) as stepper:
        thread = threading.Thread(target=lambda: steps.append(stepper.step()), daemon=True)
        thread.start()
        thread.join(20)
        hung = thread.is_alive()
        stepper.worker.shutdown_event.set()  # frees a step that waits, so the test ends
        thread.join(20)
    assert not hung, "the step waited for an outcome only it could write"
    [step] = steps
    assert [(job.id, job.lost, outcome.status) for job, outcome in step] == [
        (ids[0], 1, JobStatus.SUCCESSFUL),
        (ids[1], 1, JobStatus.SUCCESSFUL),
    ]
    assert ran == ids
    assert cqm.queries.get_jobs(ids) == []  # done: only in the history now
    history = cqm.queries.history(job_ids=ids)
    assert sorted((entry.job_id, entry.status) for entry in history) == [
        (ids[0], JobStatus.SUCCESSFUL),
        (ids[1], JobStatus.SUCCESSFUL),
    ]
