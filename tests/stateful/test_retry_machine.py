"""Several workers on one queue, stepped, with crashes, stalls, lost NOTIFYs and a clock
moved by hand: jobs of dead workers are rescued after ``retry_timer``, live workers keep
theirs, and late completions are fenced out. Jobs retry with a policy: each outcome the
engine reports (retried after the policy's wait, or failed at the last attempt) must be the
one the model predicts."""

from __future__ import annotations

import dataclasses
import sys
from datetime import timedelta

import tenacity
from hypothesis import strategies as st
from hypothesis.stateful import (
    invariant,
    precondition,
    rule,
)

from pgqueue_sync import RetryPolicy
from pgqueue_sync.engine import Worker
from pgqueue_sync.models import Job, JobId, JobStatus

from .harness import (
    PgMachine,
    advance,
    close_worker,
    compare,
    idle_timeout,
    make_worker,
    run_machine,
)
from .model import Policy, QueueModel

RETRY_TIMER = 30.0
HEARTBEAT = 10.0
MAX_WORKERS = 3

LIVE, STALLED, CRASHED = "live", "stalled", "crashed"
POLICY = Policy(attempts=2, wait=20.0)


@dataclasses.dataclass
class Member:
    worker: Worker
    state: str = LIVE
    woken: bool = True  # a NOTIFY (or the start) is waiting for it
    pending: list[tuple[JobId, int, JobStatus]] = dataclasses.field(default_factory=list)
    delays: dict[JobId, float] = dataclasses.field(default_factory=dict)


class RetryMachine(PgMachine):
    def __init__(self) -> None:
        super().__init__()
        self.fail_next = False
        self.handler_ran = False
        # Losses (max_lost) are not this machine's subject (test_lost_workers.py has them):
        # the model does not count them.
        self.db.qm.entrypoint(
            "e",
            max_lost=None,
            retry=RetryPolicy(
                stop=tenacity.stop_after_attempt(POLICY.attempts),
                wait=tenacity.wait_fixed(POLICY.wait),
            ),
        )(self.handler)
        self.model = QueueModel()
        self.members: list[Member] = []
        # Every run of a handler: job id -> [(attempt, worker index)].
        self.runs: dict[JobId, list[tuple[int, int]]] = {}
        # Jobs held by a worker when it crashed or stalled: they may run again.
        self.orphaned: set[JobId] = set()
        # Retries recorded per job: each lets it run once more.
        self.retries: dict[JobId, int] = {}
        # Every attempt whose handler was called.
        self.called: list[tuple[JobId, int]] = []
        self.add_worker()

    def handler(self, job: Job) -> None:
        self.handler_ran = True
        self.called.append((job.id, job.attempts))
        if self.fail_next:
            raise RuntimeError(f"job {job.id} failed on purpose")

    def teardown(self) -> None:
        try:
            if sys.exc_info()[1] is None:  # liveness is checked after steps that passed
                self.drain()
        finally:
            for member in self.members:
                close_worker(member.worker)
            self.db.close()

    # -- helpers ---------------------------------------------------------------------------

    def live(self) -> list[int]:
        return [i for i, m in enumerate(self.members) if m.state == LIVE]

    def pass_time(self, seconds: float) -> None:
        """Move the clock, live workers beating at their interval as their flusher would."""
        while seconds > 0:
            step = min(seconds, HEARTBEAT)
            advance(self.db, step)
            seconds -= step
            for i in self.live():
                self.beat(i)

    def beat(self, i: int) -> None:
        worker = self.members[i].worker
        held = set(worker.ledger.held())
        alive = worker.flusher.beat()
        expected = self.model.heartbeat(worker.id, held, self.db.now())
        assert set(alive) == expected, (alive, expected)

    def claim(self, i: int) -> list[Job]:
        member = self.members[i]
        worker = member.worker
        member.woken = False
        want = min(worker.options.claim_size, worker.buffer.room())
        before = {j: self.model.jobs[j].heartbeat for j in self.model.jobs}
        jobs = worker.fetcher.fetch_once()
        now = self.db.now()
        for job in jobs:
            previous = self.model.jobs[job.id]
            if previous.status is JobStatus.PICKED:
                # A re-pick: only of a job whose heartbeat is older than retry_timer.
                assert before[job.id] < now - timedelta(seconds=RETRY_TIMER), (
                    f"job {job.id} re-picked with a heartbeat {now - before[job.id]} old"
                )
        self.model.claim(worker.id, want, [j.id for j in jobs], now, worker.options.retry_timer)
        return jobs

    def run_one(self, i: int, fail: bool) -> None:
        member = self.members[i]
        job = member.worker.buffer.take(0)
        assert job is not None
        self.fail_next = fail
        self.handler_ran = False
        queued = len(member.worker.completions)
        # Its worker claimed the job again (a newer attempt) while this one waited.
        superseded = self.model.holds(member.worker.id, job.id) and not self.model.holds(
            member.worker.id, job.id, job.attempts
        )
        outcome = member.worker.runner.run_job(job)
        if superseded:
            assert (job.id, job.attempts) not in self.called, (
                f"attempt {job.attempts} of job {job.id} ran after a newer one was claimed"
            )
            assert len(member.worker.completions) == queued, outcome
            return
        if len(member.worker.completions) > queued and not self.handler_ran:
            # A rescued job that another worker re-claimed while it waited here: it does not
            # run, and its outcome is fenced out when written.
            current = self.model.jobs.get(job.id)  # None: the other worker finished it
            assert job.rescued, (job, outcome)
            assert outcome.status is JobStatus.CANCELED, (job, outcome)
            assert current is None or (current.worker, current.attempts) != (
                member.worker.id,
                job.attempts,
            )
        elif len(member.worker.completions) > queued:
            self.runs.setdefault(job.id, []).append((job.attempts, i))
            # What the policy says, not what the engine reports, goes to the model.
            status, delay = (
                POLICY.outcome(job.attempts, "raise") if fail else (JobStatus.SUCCESSFUL, 0.0)
            )
            assert (outcome.status, outcome.delay) == (status, delay), (job, fail, outcome)
            member.pending.append((job.id, job.attempts, status))
            member.delays[job.id] = delay

    def flush_one(self, i: int) -> None:
        member = self.members[i]
        recorded = member.worker.flusher.flush()
        expected = self.complete(member)
        assert recorded == expected, f"recorded {recorded}, the model says {expected}"

    def complete(self, member: Member) -> set[JobId]:
        """The member's pending outcomes, written in the model."""
        now = self.db.now()
        recorded = self.model.complete(member.worker.id, member.pending, now, delays=member.delays)
        for job_id, _, status in member.pending:
            if job_id in recorded and status is JobStatus.QUEUED:
                self.retries[job_id] = self.retries.get(job_id, 0) + 1
        member.pending.clear()
        member.delays.clear()
        return recorded

    def drain(self) -> None:
        """Liveness: with time moving and one live worker, every job ends terminal."""
        if not self.live():
            self.add_worker()
        for i in self.live():
            while self.members[i].worker.buffer.qsize():
                self.run_one(i, fail=False)
            self.flush_one(i)
        # Jobs of crashed and stalled workers are rescued once retry_timer has passed.
        self.pass_time(RETRY_TIMER + HEARTBEAT)
        drainer = self.live()[0]
        self.claim(drainer)
        # Frozen workers wake up now, their jobs claimed by another: what they write is late,
        # and fenced out.
        for i, member in enumerate(self.members):
            if member.state == STALLED:
                self.wake(i)
                while member.worker.buffer.qsize():
                    self.run_one(i, fail=False)
                self.flush_one(i)
        for _ in range(1000):
            while self.members[drainer].worker.buffer.qsize():
                self.run_one(drainer, fail=False)
            self.flush_one(drainer)
            if not self.claim(drainer):
                if not self.model.live():
                    break
                self.pass_time(POLICY.wait)  # retried jobs wait out their backoff
        compare(self.db, self.model)
        left = {i: r for i, r in self.db.rows().items() if r[0] is not JobStatus.FAILED}
        assert not left, f"jobs not terminal after draining: {left}"
        logged = {job_id for job_id, _, _, _ in self.db.log()}
        assert logged == set(self.runs), "a job ended without running, or ran without ending"

    # -- rules -----------------------------------------------------------------------------

    @precondition(lambda self: len(self.members) < MAX_WORKERS)
    @rule()
    def add_worker(self) -> None:
        self.members.append(Member(make_worker(self.db, batch_size=2, buffer_size=3)))

    @rule(priorities=st.lists(st.integers(0, 2), min_size=1, max_size=3), notify=st.booleans())
    def enqueue(self, priorities: list[int], notify: bool) -> None:
        """Add jobs; without ``notify`` the NOTIFY is lost and no worker wakes."""
        ids = self.db.enqueue(len(priorities), priorities=priorities)
        self.model.enqueue(ids, self.db.now(), priorities)
        if notify:
            for i in self.live():
                self.members[i].woken = True

    @precondition(lambda self: any(self.members[i].woken for i in self.live()))
    @rule(data=st.data())
    def fetch_when_woken(self, data: st.DataObject) -> None:
        woken = [i for i in self.live() if self.members[i].woken]
        self.claim(data.draw(st.sampled_from(woken), label="worker"))

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def poll_after_idle_timeout(self, data: st.DataObject) -> None:
        """A worker that missed a NOTIFY looks again after its idle timeout, which is
        bounded by retry_timer (so jobs of dead workers are rescued without any NOTIFY)."""
        i = data.draw(st.sampled_from(self.live()), label="worker")
        wait = idle_timeout(self.members[i].worker)
        assert 0 <= wait <= RETRY_TIMER, f"idle timeout {wait}"
        self.pass_time(wait)
        self.claim(i)

    def ready(self) -> list[int]:
        return [i for i in self.live() if self.members[i].worker.buffer.qsize()]

    @precondition(lambda self: bool(self.ready()))
    @rule(data=st.data(), fail=st.booleans())
    def run_job(self, data: st.DataObject, fail: bool) -> None:
        self.run_one(data.draw(st.sampled_from(self.ready()), label="worker"), fail)

    def unwritten(self) -> list[int]:
        return [i for i in self.live() if self.members[i].pending]

    @precondition(lambda self: bool(self.unwritten()))
    @rule(data=st.data())
    def flush(self, data: st.DataObject) -> None:
        self.flush_one(data.draw(st.sampled_from(self.unwritten()), label="worker"))

    @rule()
    def tick(self) -> None:
        self.pass_time(HEARTBEAT)

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def fetch_while_heartbeats_are_late(self, data: st.DataObject) -> None:
        """Heartbeats run late (but within retry_timer) and a worker claims meanwhile: no
        job of a live worker may be taken."""
        advance(self.db, RETRY_TIMER - HEARTBEAT)
        self.claim(data.draw(st.sampled_from(self.live()), label="worker"))
        for i in self.live():
            self.beat(i)

    @precondition(lambda self: bool(self.live()))
    @rule(data=st.data())
    def lapse_and_reclaim(self, data: st.DataObject) -> None:
        """No heartbeat for longer than retry_timer (a long pause of the whole process), then
        a worker claims again: its own lapsed jobs come back to it as new attempts while the
        older ones still wait in its buffer (they must not run) or in its pending outcomes
        (fenced out). Every lapsed job may run twice."""
        for member in self.members:
            self.orphaned |= self.model.held_by(member.worker.id)
        advance(self.db, RETRY_TIMER + 1)
        self.claim(data.draw(st.sampled_from(self.live()), label="worker"))

    @rule()
    def pass_retry_timer(self) -> None:
        self.pass_time(RETRY_TIMER + HEARTBEAT)

    def holding(self) -> list[int]:
        return [i for i in self.live() if self.members[i].worker.ledger.held()]

    @precondition(lambda self: bool(self.holding()))
    @rule(data=st.data(), state=st.sampled_from([STALLED, CRASHED]))
    def crash_or_stall(self, data: st.DataObject, state: str) -> None:
        """A worker holding jobs dies (for good) or freezes (and may come back): its jobs
        stay picked."""
        member = self.members[data.draw(st.sampled_from(self.holding()), label="worker")]
        member.state = state
        self.orphaned |= self.model.held_by(member.worker.id)
        if state == CRASHED:
            close_worker(member.worker)

    def stalled(self) -> list[int]:
        return [i for i, m in enumerate(self.members) if m.state == STALLED]

    @precondition(lambda self: bool(self.stalled()))
    @rule(data=st.data())
    def resume(self, data: st.DataObject) -> None:
        """A frozen worker wakes up and carries on: what it writes late is fenced out."""
        stalled = self.stalled()
        self.wake(data.draw(st.sampled_from(stalled), label="worker"))

    def wake(self, i: int) -> None:
        member = self.members[i]
        member.state = LIVE
        stolen = {
            job_id
            for job_id, attempt, _ in member.pending
            if not self.model.holds(member.worker.id, job_id, attempt)
        }
        recorded = member.worker.flusher.flush()
        assert not recorded & stolen, f"late completions of re-picked jobs recorded: {stolen}"
        expected = self.complete(member)
        assert recorded == expected, (recorded, expected)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def without_crashes_a_job_runs_once_per_retry(self) -> None:
        for job_id, runs in self.runs.items():
            allowed = 1 + self.retries.get(job_id, 0)
            assert len(runs) <= allowed or job_id in self.orphaned, f"job {job_id} ran {runs}"

    @invariant()
    def each_job_is_logged_at_most_once(self) -> None:
        logged = [job_id for job_id, _, _, _ in self.db.log()]
        assert len(logged) == len(set(logged)), f"a job was logged twice: {sorted(logged)}"

    @invariant()
    def tables_match_the_model(self) -> None:
        compare(self.db, self.model)


def test_retry_machine(dsn: str) -> None:
    run_machine(RetryMachine, dsn)
