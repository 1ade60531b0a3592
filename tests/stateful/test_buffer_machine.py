"""The job buffer of one worker, stepped: enqueue, fetch, start, finish, flush, heartbeat,
cancel.

Each handler blocks until the machine ends it (return, raise, or SystemExit), so a job can
be seen waiting in the buffer, running, finished but unwritten, or terminal. Jobs have
priorities and delays, lists of three or more go through COPY (the threshold is lowered),
entrypoint "r" retries with a policy (its retried and failed outcomes are predicted by the
model, not read from the engine), and cancellations reach the worker as its listener would
hand them over: a buffered job whose cancellation arrived never runs its handler.
"""

from __future__ import annotations

import threading
from typing import Any

import tenacity
from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
)

from pgqueue_sync import RetryPolicy
from pgqueue_sync.engine import Worker
from pgqueue_sync.models import JobId, JobStatus, Outcome

from .harness import (
    GUARD,
    Gates,
    Key,
    PgMachine,
    advance,
    close_worker,
    compare,
    deliver_cancel,
    make_worker,
    run_machine,
    snapshot,
)
from .model import Policy, QueueModel

COPY_THRESHOLD = 3  # lists this long go through COPY
POLICY = Policy(attempts=2, wait=5.0)  # entrypoint "r"


class BufferMachine(PgMachine):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates()
        self.db.qm.entrypoint("e")(self.gates.handler)
        self.db.qm.entrypoint(
            "r",
            retry=RetryPolicy(
                stop=tenacity.stop_after_attempt(POLICY.attempts),
                wait=tenacity.wait_fixed(POLICY.wait),
            ),
        )(self.gates.handler)
        self.db.qm.queries.copy_threshold = COPY_THRESHOLD
        self.model = QueueModel()
        self.threads: dict[Key, threading.Thread] = {}
        self.outcomes: dict[Key, Outcome] = {}
        # Finished attempts not yet written: the outcome the model expects, and its delay.
        self.unwritten: dict[Key, tuple[JobStatus, float]] = {}
        # Held attempts whose cancellation reached the worker.
        self.cancelled: set[Key] = set()
        self.terminal: dict[JobId, JobStatus] = {}
        # (jobs asked for, free room) of every claim.
        self.asked: list[tuple[int, int]] = []
        self._worker: Worker | None = None

    @property
    def worker(self) -> Worker:
        assert self._worker is not None
        return self._worker

    @initialize(batch_size=st.integers(1, 4), buffer_size=st.integers(1, 5))
    def start_worker(self, batch_size: int, buffer_size: int) -> None:
        worker = make_worker(self.db, batch_size=batch_size, buffer_size=buffer_size, workers=2)
        inner = worker.fetch_store.dequeue

        def dequeue(limit: int, *args: Any, **kwargs: Any) -> Any:
            room = worker.buffer.room()
            self.asked.append((limit, room))
            assert limit <= room, f"a claim asked for {limit} jobs with {room} free slot(s)"
            return inner(limit, *args, **kwargs)

        setattr(worker.fetch_store, "dequeue", dequeue)  # noqa: B010 - record each ask
        self._worker = worker

    def teardown(self) -> None:
        try:
            self.gates.open_all()
            for thread in self.threads.values():
                thread.join(GUARD)
            if self._worker is not None:
                close_worker(self._worker)
        finally:
            self.db.close()

    # -- what the model expects ------------------------------------------------------------

    def expected(self, key: Key, action: str) -> tuple[JobStatus, float]:
        """The outcome of an attempt that ended with ``action``, and its retry delay."""
        if action == Gates.OK:
            return JobStatus.SUCCESSFUL, 0.0
        if self.model.jobs[key[0]].entrypoint == "r":
            return POLICY.outcome(key[1], action)
        return JobStatus.EXCEPTION, 0.0

    def deliver(self, job_ids: list[JobId]) -> None:
        """The worker learns that these jobs' cancellation was requested."""
        held = snapshot(self.worker).held
        self.cancelled |= {(i, held[i]) for i in job_ids if i in held}

    # -- rules -----------------------------------------------------------------------------

    @rule(
        jobs=st.lists(
            st.tuples(
                st.sampled_from(["e", "e", "r"]),
                st.integers(-1, 2),
                st.sampled_from([0.0, 0.0, 5.0, 15.0]),
            ),
            min_size=1,
            max_size=5,
        )
    )
    def enqueue(self, jobs: list[tuple[str, int, float]]) -> None:
        """Jobs of either entrypoint, with priorities and delays (three or more: by COPY)."""
        ids = self.db.enqueue(
            len(jobs),
            entrypoints=[e for e, _, _ in jobs],
            priorities=[p for _, p, _ in jobs],
            delays=[d for _, _, d in jobs],
        )
        self.model.enqueue(ids, self.db.now(), [p for _, p, _ in jobs], [d for _, _, d in jobs])
        for job_id, (entrypoint, _, _) in zip(ids, jobs, strict=True):
            self.model.jobs[job_id].entrypoint = entrypoint

    @rule()
    def fetch(self) -> None:
        room = self.worker.buffer.room()
        want = min(self.worker.options.claim_size, room)
        asked = len(self.asked)
        jobs = self.worker.fetcher.fetch_once()
        for limit, free in self.asked[asked:]:
            assert limit <= free, f"a claim asked for {limit} jobs with {free} free slot(s)"
        self.model.claim(
            self.worker.id,
            want,
            [j.id for j in jobs],
            self.db.now(),
            self.worker.options.retry_timer,
        )
        # A job claimed with its cancellation already requested starts cancelled.
        self.cancelled |= {(j.id, j.attempts) for j in jobs if j.cancel_requested}

    @precondition(lambda self: self._worker is not None and self.worker.buffer.qsize() > 0)
    @rule()
    def start(self) -> None:
        job = self.worker.buffer.take(0)
        assert job is not None
        key = (job.id, job.attempts)

        def run() -> None:
            self.outcomes[key] = self.worker.runner.run_job(job)

        thread = threading.Thread(target=run, daemon=True)
        self.threads[key] = thread
        thread.start()
        self.gates.wait_for(
            lambda: key in self.gates.entered or not thread.is_alive(), f"job {key} to start"
        )
        if key in self.cancelled:
            # Cancelled while it waited in the buffer: it ends at once, its handler unrun.
            assert key not in self.gates.entered, (
                f"the handler of job {key} ran after its cancellation reached the worker"
            )
            thread.join(GUARD)
            del self.threads[key]
            assert self.outcomes[key].status is JobStatus.CANCELED, self.outcomes[key]
            self.unwritten[key] = (JobStatus.CANCELED, 0.0)
            return
        assert key in self.gates.entered, f"job {key} was taken but its handler never ran"

    @precondition(lambda self: bool(self.threads))
    @rule(data=st.data(), action=st.sampled_from([Gates.OK, Gates.RAISE, Gates.EXIT]))
    def finish(self, data: st.DataObject, action: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.threads)), label="job")
        self.gates.release(key, action)
        thread = self.threads.pop(key)
        thread.join(GUARD)
        assert not thread.is_alive(), f"job {key} did not finish"
        # The engine's outcome must be the model's: retried (with the policy's wait) or
        # failed for entrypoint "r", exception for "e".
        status, delay = self.expected(key, action)
        outcome = self.outcomes[key]
        assert (outcome.status, outcome.delay) == (status, delay), (key, action, outcome)
        self.unwritten[key] = (status, delay)

    @rule()
    def flush(self) -> None:
        recorded = self.worker.flusher.flush()
        outcomes = [(i, a, status) for (i, a), (status, _) in self.unwritten.items()]
        delays = {i: delay for (i, _), (_, delay) in self.unwritten.items()}
        expected = self.model.complete(self.worker.id, outcomes, self.db.now(), delays=delays)
        assert recorded == expected == {i for i, _ in self.unwritten}, (recorded, expected)
        self.cancelled -= set(self.unwritten)
        self.unwritten.clear()

    @rule()
    def heartbeat_tick(self) -> None:
        advance(self.db, self.worker.options.heartbeat_interval)
        held = set(self.worker.ledger.held())
        alive = self.worker.flusher.beat()
        expected = self.model.heartbeat(self.worker.id, held, self.db.now())
        assert set(alive) == expected == self.model.held_by(self.worker.id)
        # The heartbeat also hands over the cancellations the worker may have missed.
        requested = [i for i, flag in alive.items() if flag]
        assert requested == [i for i in alive if self.model.jobs[i].cancel_requested]
        self.deliver(requested)

    @rule(data=st.data(), notify=st.booleans())
    def cancel(self, data: st.DataObject, notify: bool) -> None:
        """Cancel some jobs, in any state; the NOTIFY reaches the worker, or is lost (then
        the next heartbeat brings the request)."""
        known = sorted(set(self.model.jobs) | {i for i, _, _, _ in self.model.log})
        if not known:
            return
        held = sorted(self.worker.ledger.held())  # often the interesting ones: drawn more often
        pick = st.sampled_from(known)
        if held:
            pick = st.one_of(st.sampled_from(held), pick)
        ids = data.draw(st.sets(pick, min_size=1, max_size=3), label="ids")
        result = self.db.qm.queries.cancel(ids)
        canceled, requested = self.model.cancel(ids)
        assert (result.canceled, result.requested) == (canceled, requested)
        if notify and requested:
            deliver_cancel(self.worker, requested)
            self.deliver(requested)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def buffer_within_its_bound(self) -> None:
        if self._worker is not None:
            assert self.worker.buffer.qsize() <= self.worker.options.buffer_size

    @invariant()
    def no_claim_asked_for_more_than_the_room(self) -> None:
        for limit, free in self.asked:
            assert limit <= free, f"a claim asked for {limit} jobs with {free} free slot(s)"

    @invariant()
    def every_job_in_exactly_one_state(self) -> None:
        if self._worker is None:
            return
        now = snapshot(self.worker)
        buffered, running = now.buffered, now.running
        assert len(set(buffered)) == len(buffered), "a job is buffered twice"
        assert not set(buffered) & running, "a job is buffered and running at once"
        unwritten = set(self.unwritten)
        held = set(now.held.items())
        assert held == set(buffered) | running | unwritten, (held, buffered, running, unwritten)
        rows = self.db.rows()
        logged = {i for i, _, _, _ in self.db.log()}
        states = {
            "queued": {i for i, r in rows.items() if r[0] is JobStatus.QUEUED},
            "buffered": {i for i, _ in buffered},
            "running": {i for i, _ in running},
            "unwritten": {i for i, _ in unwritten},
            "failed": {i for i, r in rows.items() if r[0] is JobStatus.FAILED},
            "finished": logged - rows.keys(),
        }
        seen: dict[JobId, str] = {}
        for state, ids in states.items():
            for job_id in ids:
                assert job_id not in seen, f"job {job_id} is {seen[job_id]} and {state}"
                seen[job_id] = state
        everything = set(self.model.jobs) | {i for i, _, _, _ in self.model.log}
        assert set(seen) == everything, (seen, everything)

    @invariant()
    def terminal_states_never_change(self) -> None:
        now = self.model.terminal()
        for job_id, status in self.terminal.items():
            if status is JobStatus.FAILED and now.get(job_id) is JobStatus.CANCELED:
                continue  # a failed job may still be cancelled
            assert now.get(job_id) == status, f"job {job_id} left its terminal state {status}"
        self.terminal.update(now)

    @invariant()
    def tables_match_the_model(self) -> None:
        compare(self.db, self.model)


def test_buffer_machine(dsn: str) -> None:
    run_machine(BufferMachine, dsn)
