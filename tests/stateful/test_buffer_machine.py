"""The job buffer of one worker, stepped: fetch, start, finish, flush, heartbeat.

Each handler blocks until the machine ends it (return, raise, or SystemExit), so a job can
be seen waiting in the buffer, running, finished but unwritten, or terminal.
"""

from __future__ import annotations

import threading
from typing import Any

from hypothesis import strategies as st
from hypothesis.stateful import (
    initialize,
    invariant,
    precondition,
    rule,
)

from pgqueue_sync.models import JobId, JobStatus
from pgqueue_sync.worker import Worker

from .harness import (
    GUARD,
    Gates,
    PgMachine,
    advance,
    close_worker,
    compare,
    expected_status,
    make_worker,
    run_machine,
)
from .model import QueueModel

Key = tuple[JobId, int]


class BufferMachine(PgMachine):
    def __init__(self) -> None:
        super().__init__()
        self.gates = Gates()
        self.db.qm.entrypoint("e")(self.gates.handler)
        self.model = QueueModel()
        self.threads: dict[Key, threading.Thread] = {}
        self.unwritten: dict[Key, str] = {}
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
        inner = worker.fetch_queries.dequeue

        def dequeue(limit: int, *args: Any, **kwargs: Any) -> Any:
            room = worker.buffer.room()
            self.asked.append((limit, room))
            assert limit <= room, f"a claim asked for {limit} jobs with {room} free slot(s)"
            return inner(limit, *args, **kwargs)

        setattr(worker.fetch_queries, "dequeue", dequeue)  # noqa: B010 - record each ask
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

    # -- what the worker holds, as it says -------------------------------------------------

    def buffered(self) -> list[Key]:
        with self.worker.buffer.mutex:
            return [(j.id, j.attempts) for j in self.worker.buffer.queue]

    def running(self) -> set[Key]:
        return {(j.id, j.attempts) for j in self.worker.running()}

    # -- rules -----------------------------------------------------------------------------

    @rule(n=st.integers(1, 4))
    def enqueue(self, n: int) -> None:
        self.model.enqueue(self.db.enqueue(n), self.db.now())

    @rule()
    def fetch(self) -> None:
        room = self.worker.buffer.room()
        want = min(self.worker.options.claim_size, room)
        asked = len(self.asked)
        jobs = self.worker.fetch_once()
        for limit, free in self.asked[asked:]:
            assert limit <= free, f"a claim asked for {limit} jobs with {free} free slot(s)"
        self.model.claim(
            self.worker.id,
            want,
            [j.id for j in jobs],
            self.db.now(),
            self.worker.options.retry_timer,
        )

    @precondition(lambda self: self._worker is not None and self.worker.buffer.qsize() > 0)
    @rule()
    def start(self) -> None:
        job = self.worker.buffer.take(0)
        assert job is not None
        key = (job.id, job.attempts)
        thread = threading.Thread(target=self.worker.run_job, args=(job,), daemon=True)
        self.threads[key] = thread
        thread.start()
        self.gates.wait_for(
            lambda: key in self.gates.entered or not thread.is_alive(), f"job {key} to start"
        )
        assert key in self.gates.entered, f"job {key} was taken but its handler never ran"

    @precondition(lambda self: bool(self.threads))
    @rule(data=st.data(), action=st.sampled_from([Gates.OK, Gates.RAISE, Gates.EXIT]))
    def finish(self, data: st.DataObject, action: str) -> None:
        key = data.draw(st.sampled_from(sorted(self.threads)), label="job")
        self.gates.release(key, action)
        thread = self.threads.pop(key)
        thread.join(GUARD)
        assert not thread.is_alive(), f"job {key} did not finish"
        self.unwritten[key] = action

    @rule()
    def flush(self) -> None:
        recorded = self.worker.flush()
        outcomes = [(i, a, expected_status(act)) for (i, a), act in self.unwritten.items()]
        expected = self.model.complete(self.worker.id, outcomes, self.db.now())
        assert recorded == expected == {i for i, _ in self.unwritten}, (recorded, expected)
        self.unwritten.clear()

    @rule()
    def heartbeat_tick(self) -> None:
        advance(self.db, self.worker.options.heartbeat_interval)
        held = set(self.worker.held())
        alive = self.worker.beat()
        expected = self.model.heartbeat(self.worker.id, held, self.db.now())
        assert set(alive) == expected == self.model.held_by(self.worker.id)

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
        buffered = self.buffered()
        running = self.running()
        assert len(set(buffered)) == len(buffered), "a job is buffered twice"
        assert not set(buffered) & running, "a job is buffered and running at once"
        unwritten = set(self.unwritten)
        held = {(i, j.attempts) for i, j in self.worker.held().items()}
        assert held == set(buffered) | running | unwritten, (held, buffered, running, unwritten)
        rows = self.db.rows()
        terminal = {i for i, _, _, _ in self.db.log()}
        states = {
            "queued": {i for i, r in rows.items() if r[0] is JobStatus.QUEUED},
            "buffered": {i for i, _ in buffered},
            "running": {i for i, _ in running},
            "unwritten": {i for i, _ in unwritten},
            "terminal": terminal,
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
            assert now.get(job_id) == status, f"job {job_id} left its terminal state {status}"
        self.terminal.update(now)

    @invariant()
    def tables_match_the_model(self) -> None:
        compare(self.db, self.model)


def test_buffer_machine(dsn: str) -> None:
    run_machine(BufferMachine, dsn)
