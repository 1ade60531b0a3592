"""The reference model alone, with many more examples than the machines that run against
PostgreSQL: its own rules must keep the guarantees the engine is checked against."""

from __future__ import annotations

import copy
import uuid
from datetime import datetime, timedelta, timezone

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    invariant,
    rule,
    run_state_machine_as_test,
)

from pgqueue_sync.models import JobId, JobStatus

from .model import LIVE, LogRow, QueueModel

RETRY_TIMER = timedelta(seconds=30)
OUTCOMES = [JobStatus.SUCCESSFUL, JobStatus.EXCEPTION, JobStatus.FAILED, JobStatus.QUEUED]


class ModelMachine(RuleBasedStateMachine):
    workers = Bundle("workers")

    def __init__(self) -> None:
        super().__init__()
        self.model = QueueModel()
        self.now = datetime(2030, 1, 1, tzinfo=timezone.utc)
        self.next_id = 1
        self.dead: set[uuid.UUID] = set()
        # What each worker believes it holds: (job id, attempt).
        self.holding: dict[uuid.UUID, set[tuple[JobId, int]]] = {}
        self.logged: list[LogRow] = []
        self.attempts: dict[JobId, int] = {}
        # The machine's own account, kept apart from the model's: each job's attempts so far,
        # and who holds which attempt now. Completions are checked against it.
        self.tries: dict[JobId, int] = {}
        self.owner: dict[JobId, tuple[uuid.UUID, int]] = {}

    @rule(target=workers)
    def add_worker(self) -> uuid.UUID:
        worker = uuid.uuid4()
        self.holding[worker] = set()
        return worker

    @rule(
        jobs=st.lists(
            st.tuples(st.integers(-1, 1), st.sampled_from([0, 0, 5, 40])), min_size=1, max_size=4
        )
    )
    def enqueue(self, jobs: list[tuple[int, int]]) -> None:
        """New jobs, each with a priority and a delay (seconds)."""
        ids = list(range(self.next_id, self.next_id + len(jobs)))
        self.next_id += len(jobs)
        self.model.enqueue(ids, self.now, [p for p, _ in jobs], [float(d) for _, d in jobs])
        self.tries.update(dict.fromkeys(ids, 0))

    @rule(worker=workers, limit=st.integers(1, 4))
    def claim(self, worker: uuid.UUID, limit: int) -> None:
        if worker in self.dead:
            return
        ids = self.model.next_claim(limit, self.now, RETRY_TIMER)
        for job_id in ids:
            job = self.model.jobs[job_id]
            if job.status is JobStatus.PICKED:
                assert job.heartbeat < self.now - RETRY_TIMER, "a live worker's job re-picked"
        self.model.claim(worker, limit, ids, self.now, RETRY_TIMER)
        for job_id in ids:
            self.tries[job_id] += 1
            self.owner[job_id] = (worker, self.tries[job_id])
            self.holding[worker].add((job_id, self.tries[job_id]))
            assert self.model.jobs[job_id].attempts == self.tries[job_id]

    @rule(worker=workers, limit=st.integers(1, 4))
    def lapse_and_reclaim(self, worker: uuid.UUID, limit: int) -> None:
        """A worker's heartbeats stop for longer than retry_timer (a long GC pause), then it
        claims again: its own lapsed jobs come back to it as new attempts, while it still
        believes it holds the old ones."""
        self.now += RETRY_TIMER + timedelta(seconds=1)
        self.claim(worker, limit)

    @rule(worker=workers, data=st.data(), status=st.sampled_from(OUTCOMES))
    def complete(self, worker: uuid.UUID, data: st.DataObject, status: JobStatus) -> None:
        """Complete one attempt this worker believes it holds (possibly long lost)."""
        if worker in self.dead or not self.holding[worker]:
            return
        key = data.draw(st.sampled_from(sorted(self.holding[worker])), label="attempt")
        self.holding[worker].discard(key)
        job_id, attempt = key
        before = copy.deepcopy(self.model)
        recorded = self.model.complete(worker, [(job_id, attempt, status)], self.now)
        # Recorded exactly when this worker still holds this attempt, by the machine's own
        # account (claims, re-picks and releases it saw), not by the model's.
        holds = self.owner.get(job_id) == (worker, attempt)
        assert (job_id in recorded) == holds, (
            f"completion of {key} by {worker}: recorded {recorded}, holder {self.owner.get(job_id)}"
        )
        if holds:
            del self.owner[job_id]
        else:
            assert self.model == before, "a fenced completion changed the queue"

    @rule(worker=workers)
    def beat(self, worker: uuid.UUID) -> None:
        if worker not in self.dead:
            self.model.heartbeat(worker, {i for i, _ in self.holding[worker]}, self.now)

    @rule(worker=workers, data=st.data())
    def release(self, worker: uuid.UUID, data: st.DataObject) -> None:
        if worker in self.dead or not self.holding[worker]:
            return
        held = sorted(self.holding[worker])
        unstarted = data.draw(st.sets(st.sampled_from(held)), label="unstarted")
        released = self.model.release(worker, {i for i, _ in held}, {i for i, _ in unstarted})
        expected = {i for i, a in held if self.owner.get(i) == (worker, a)}
        assert released == expected, (released, expected)
        for job_id in released:
            del self.owner[job_id]
            if job_id in {i for i, _ in unstarted}:
                self.tries[job_id] -= 1
        self.holding[worker].clear()

    @rule(data=st.data())
    def cancel(self, data: st.DataObject) -> None:
        """Cancel some jobs, of any state (finished ones included)."""
        if self.next_id == 1:
            return
        ids = data.draw(st.sets(st.integers(1, self.next_id - 1), max_size=3), label="ids")
        before = {i: j.status for i, j in self.model.jobs.items()}
        canceled, requested = self.model.cancel(ids)
        assert set(canceled) == {
            i for i in ids if before.get(i) in (JobStatus.QUEUED, JobStatus.FAILED)
        }
        assert set(requested) == {i for i in ids if before.get(i) is JobStatus.PICKED}
        assert all(self.model.jobs[i].cancel_requested for i in requested)
        assert not set(canceled) & set(self.model.jobs)

    @rule(worker=workers)
    def crash(self, worker: uuid.UUID) -> None:
        self.dead.add(worker)

    @rule(seconds=st.sampled_from([1, 10, 20, 31]), beat=st.booleans())
    def advance(self, seconds: int, beat: bool) -> None:
        """Time passes, and live workers beat (or are late)."""
        self.now += timedelta(seconds=seconds)
        if beat:
            for worker in self.holding.keys() - self.dead:
                self.beat(worker)

    @invariant()
    def every_job_in_exactly_one_state(self) -> None:
        for job in self.model.jobs.values():
            assert job.status in (*LIVE, JobStatus.FAILED)
            assert (job.status is JobStatus.PICKED) == (job.worker is not None), job
        logged = [job_id for job_id, _, _, _ in self.model.log]
        gone = set(logged) - set(self.model.jobs)
        assert set(range(1, self.next_id)) == set(self.model.jobs) | gone

    @invariant()
    def terminal_states_never_change(self) -> None:
        assert self.model.log[: len(self.logged)] == self.logged, "the log was rewritten"
        self.logged = list(self.model.log)
        for job_id, _, _, _ in self.logged:
            job = self.model.jobs.get(job_id)
            assert job is None or job.status is JobStatus.FAILED, f"logged job {job_id} is live"

    @invariant()
    def attempts_only_grow(self) -> None:
        for job_id, job in self.model.jobs.items():
            if job.status is JobStatus.QUEUED:
                continue  # a release gives an unstarted attempt back
            assert job.attempts >= self.attempts.get(job_id, 0)
        self.attempts = {i: j.attempts for i, j in self.model.jobs.items()}

    def teardown(self) -> None:
        """Liveness: one live worker, time moving, drains the queue."""
        worker = uuid.uuid4()
        for _ in range(1000):
            self.now += RETRY_TIMER + timedelta(seconds=1)
            ids = self.model.next_claim(10, self.now, RETRY_TIMER)
            if not ids and not self.model.live():
                break
            self.model.claim(worker, 10, ids, self.now, RETRY_TIMER)
            attempts = [(i, self.model.jobs[i].attempts, JobStatus.SUCCESSFUL) for i in ids]
            assert self.model.complete(worker, attempts, self.now) == set(ids)
        assert not self.model.live(), "jobs left live after draining"


def test_model_machine() -> None:
    current = settings()
    run_state_machine_as_test(
        ModelMachine, settings=settings(current, max_examples=current.max_examples * 20)
    )
