"""A real ``run()`` (fetcher, worker threads, flusher, listener), stopped at any point, with
and without a shutdown deadline.

Handlers block until the machine ends them, and after each step the machine waits (on
events, never on time) until the worker has settled: every thread is either inside a
handler or has nothing to do, and the fetcher has claimed all it may. Which jobs are
buffered and which are running is then the same on every replay.
"""

from __future__ import annotations

import sys
import threading
import uuid
from collections.abc import Iterable
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, precondition, rule

from pgqueue_sync.engine import Worker
from pgqueue_sync.models import Job, JobId, JobStatus

from .harness import (
    GUARD,
    Gates,
    Hooks,
    Key,
    PgMachine,
    advance,
    expected_status,
    observed,
    run_machine,
    snapshot,
)


class ShutdownMachine(PgMachine, Hooks):
    # Shutdown deadlines drawn by the machine; None: wait for running jobs however long.
    DEADLINES: tuple[float | None, ...] = (None, 5.0)
    # Whether the end of every example passes the deadline (if jobs are still held).
    deadline_always_comes = False

    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates()
        self.db.qm.entrypoint("e")(self.gates.handler)
        self.enqueued: list[JobId] = []
        self.workers = 1
        self.claim_size = 1
        self.deadline: float | None = None
        self.worker: Worker | None = None
        self.fetches = 0
        self.late_fetches: list[str] = []
        self.thread: threading.Thread | None = None
        self.error: BaseException | None = None
        self.stop_requested = False
        self.shutting_down_seen = False  # the worker has left its fetch loop
        self.deadline_passed = False
        # Jobs enqueued after the shutdown request: never to be claimed.
        self.after_stop: set[JobId] = set()
        # How the machine ended each handler it let finish.
        self.finished: dict[JobId, str] = {}
        # Jobs waiting in the buffer when the deadline passed: released, attempt given back.
        self.unstarted_at_deadline: set[JobId] = set()
        self.running_at_deadline: set[JobId] = set()
        self.terminal: dict[JobId, JobStatus] = {}
        self.trace: list[str] = []

    # -- the engine, observed (Hooks) -----------------------------------------------------

    def fetched(self, worker: Worker, jobs: list[Job], after_stop: bool) -> None:
        self.worker = worker
        if after_stop:
            self.late_fetches.append("a fetch after the fetch loop saw the stop")
        self.fetches += 1
        self.gates.notify()

    def shutting_down(self, worker: Worker) -> None:
        self.worker = worker
        self.shutting_down_seen = True
        self.gates.notify()

    def forgot(self, worker: Worker) -> None:
        self.gates.notify()

    def _run(self, **kwargs: Any) -> None:
        try:
            self.db.qm.run(**kwargs)
        except BaseException as exc:
            self.error = exc
        finally:
            self.gates.notify()

    @property
    def returned(self) -> bool:
        return self.thread is not None and not self.thread.is_alive()

    def picked(self) -> dict[JobId, uuid.UUID | None]:
        return {i: r[2] for i, r in self.db.rows().items() if r[0] is JobStatus.PICKED}

    def queued(self) -> set[JobId]:
        return {i for i, r in self.db.rows().items() if r[0] is JobStatus.QUEUED}

    def settled(self) -> bool:
        """No thread of the worker has anything left to do until the machine acts.

        The table is read once, and the worker's state under its locks, so that a claim or
        a write in flight is seen as such (never half before, half after)."""
        if self.returned:
            return True
        worker = self.worker
        if worker is None or self.fetches == 0:
            return False
        rows = self.db.rows()
        now = snapshot(worker)
        held = set(now.held)
        buffered = len(now.buffered)
        room = worker.options.buffer_size - buffered
        inside = len(self.gates.entered)  # the caller holds gates.cond
        if len(held) != inside + buffered or inside != min(self.workers, len(held)):
            return False  # a claim, a take or a write is under way
        if {i for i, r in rows.items() if r[0] is JobStatus.PICKED} != held:
            return False
        queued = {i for i, r in rows.items() if r[0] is JobStatus.QUEUED}
        return self.stop_requested or room < self.claim_size or not queued - self.after_stop

    def settle(self, what: str) -> None:
        self.trace.append(what)
        self.gates.wait_for(self.settled, what)
        worker = self.worker
        if (
            self.stop_requested
            and not self.returned
            and worker is not None
            and not worker.ledger.held()
        ):
            # Nothing is left to finish: run() is returning. Wait for it, so that whether it
            # has returned never depends on timing (rule preconditions read it).
            self.join()

    def running(self) -> list[Key]:
        return sorted(self.gates.entered)

    # -- rules -----------------------------------------------------------------------------

    @initialize(
        workers=st.integers(1, 2),
        batch_size=st.integers(1, 3),
        buffer_size=st.integers(1, 4),
        data=st.data(),
    )
    def start(self, workers: int, batch_size: int, buffer_size: int, data: st.DataObject) -> None:
        deadline = data.draw(st.sampled_from(self.DEADLINES), label="deadline")
        self.workers = workers
        self.claim_size = min(batch_size, buffer_size)
        self.deadline = deadline
        self.db.qm.worker_class = observed(self)
        self.thread = threading.Thread(
            target=self._run,
            kwargs={
                "workers": workers,
                "batch_size": batch_size,
                "buffer_size": buffer_size,
                "shutdown_timeout": deadline,
                "dequeue_timeout": 3600.0,
            },
            daemon=True,
        )
        self.thread.start()
        self.settle("the worker to start")

    @rule(n=st.integers(1, 3))
    def enqueue(self, n: int) -> None:
        ids = self.db.enqueue(n)
        self.enqueued += ids
        if self.stop_requested:
            self.after_stop.update(ids)
        self.settle(f"the worker to claim {ids}")

    @precondition(lambda self: bool(self.gates.entered) and not self.deadline_passed)
    @rule(data=st.data(), action=st.sampled_from([Gates.OK, Gates.RAISE, Gates.EXIT]))
    def finish(self, data: st.DataObject, action: str) -> None:
        key = data.draw(st.sampled_from(self.running()), label="job")
        self.finished[key[0]] = action
        self.gates.release(key, action)
        self.gates.wait_for(lambda: key in self.gates.returned, f"job {key} to return")
        self.settle(f"job {key} to be written")

    @precondition(lambda self: not self.stop_requested)
    @rule()
    def request_shutdown(self) -> None:
        self.stop_requested = True
        self.db.qm.alive = False
        self.gates.wait_for(lambda: self.shutting_down_seen, "the worker to stop fetching")
        self.settle("the worker to settle after the stop")

    @precondition(
        lambda self: (
            self.stop_requested
            and self.deadline is not None
            and not self.deadline_passed
            and not self.returned
        )
    )
    @rule()
    def pass_the_deadline(self) -> None:
        assert self.worker is not None
        assert self.deadline is not None
        self.unstarted_at_deadline = {i for i, _ in snapshot(self.worker).buffered}
        self.running_at_deadline = {i for i, _ in self.gates.entered}
        self.deadline_passed = True
        advance(self.db, self.deadline + 1)
        self.db.qm.alive = False  # wakes the shutdown, which finds its deadline passed
        self.join()

    def join(self) -> None:
        assert self.thread is not None
        self.thread.join(GUARD)
        assert not self.thread.is_alive(), "run() did not return"
        if self.error is not None:
            raise self.error

    def teardown(self) -> None:
        try:
            if sys.exc_info()[1] is None:
                self.finish_the_run()
        finally:
            self.gates.open_all()
            if self.thread is not None and self.thread.is_alive():
                self.db.qm.alive = False
                self.thread.join(GUARD)
            self.db.close()

    def finish_the_run(self) -> None:
        """Stop (if no step did), let every handler return, and check where jobs ended."""
        if not self.stop_requested:
            self.request_shutdown()
        if self.deadline_always_comes and not self.returned and not self.deadline_passed:
            self.pass_the_deadline()
        if not self.returned:
            for key in self.running():
                self.finished[key[0]] = Gates.OK
            self.gates.open_all()
            self.join()
        picked = self.picked()
        assert not picked, f"jobs left picked after run() returned: {picked}"
        rows = self.db.rows()
        log = self.db.log()
        logged = [job_id for job_id, _, _, _ in log]
        assert len(logged) == len(set(logged)), f"a job was logged twice: {log}"
        for job_id in self.enqueued:
            assert (job_id in rows) != (job_id in logged), f"job {job_id}: queued and logged"
        for job_id in self.unstarted_at_deadline:
            assert rows.get(job_id, (None, -1))[:2] == (JobStatus.QUEUED, 0), (
                f"job {job_id}, buffered at the deadline, is {rows.get(job_id)}"
            )
        for job_id in self.running_at_deadline:
            row = rows.get(job_id)
            assert row is not None, f"job {job_id}, running at the deadline, was logged"
            assert row[0] is JobStatus.QUEUED, f"job {job_id}, running at the deadline, is {row}"
        if self.deadline_passed:
            return
        # Without a deadline passing, every job claimed before the stop has finished.
        outcomes = {job_id: status for job_id, status, _, _ in log}
        for job_id, action in self.finished.items():
            assert outcomes.get(job_id) == expected_status(action), (job_id, action, outcomes)

    # -- invariants ------------------------------------------------------------------------

    @invariant()
    def no_fetch_after_shutdown(self) -> None:
        assert not self.late_fetches, self.late_fetches
        claimed = self.claimed(self.after_stop)
        assert not claimed, f"jobs enqueued after the shutdown request were claimed: {claimed}"

    def claimed(self, ids: Iterable[JobId]) -> set[JobId]:
        rows = self.db.rows()
        logged = {job_id for job_id, _, _, _ in self.db.log()}
        return {i for i in ids if i in logged or rows[i][0] is not JobStatus.QUEUED or rows[i][1]}

    @invariant()
    def buffered_and_running_are_apart_and_held(self) -> None:
        worker = self.worker
        if worker is None or self.returned:
            return
        with self.gates.cond:
            assert self.settled(), f"not settled after {self.trace}"
            rows = self.db.rows()
            now = snapshot(worker)
            held = set(now.held)
            buffered = [i for i, _ in now.buffered]
            running = {i for i, _ in self.gates.entered}
        assert len(buffered) <= worker.options.buffer_size
        assert not set(buffered) & running, "a job is buffered and running at once"
        assert set(buffered) | running == held, (buffered, running, held)
        mine = {i for i, r in rows.items() if r[0] is JobStatus.PICKED and r[2] == worker.id}
        assert mine == held, (mine, held)

    @invariant()
    def nothing_left_picked_once_run_returns(self) -> None:
        if self.returned:
            picked = self.picked()
            assert not picked, f"jobs left picked after run() returned: {picked}"

    @invariant()
    def terminal_states_never_change(self) -> None:
        now = {job_id: status for job_id, status, _, _ in self.db.log()}
        for job_id, status in self.terminal.items():
            assert now.get(job_id) == status, f"job {job_id} left its terminal state {status}"
        self.terminal.update(now)


class DeadlineMachine(ShutdownMachine):
    """The same run, with a shutdown deadline that always comes: every example ends by
    stopping the worker and passing its deadline while it still holds jobs, so what it gives
    back (buffered jobs with their attempt, running ones released) is checked every time."""

    DEADLINES = (5.0,)
    deadline_always_comes = True


def test_shutdown_machine(dsn: str) -> None:
    run_machine(ShutdownMachine, dsn)


def test_shutdown_machine_whose_deadline_always_comes(dsn: str) -> None:
    run_machine(DeadlineMachine, dsn)
