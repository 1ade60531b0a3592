"""What the state machines share: a fresh schema per example, a worker driven one step at a
time, handlers a test releases one at a time, and the tables compared with the model."""

from __future__ import annotations

import dataclasses
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar

import psycopg
from hypothesis import settings
from hypothesis.stateful import RuleBasedStateMachine, run_state_machine_as_test
from psycopg.rows import tuple_row

from pgqueue_sync import ManualClock, PsycopgDriver, QueueManager, Settings, events
from pgqueue_sync.clock import Clock
from pgqueue_sync.connection import ManagedConnection
from pgqueue_sync.cron import Cron
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.buffer import Mailbox
from pgqueue_sync.engine.hooks import HookList, WorkerHooks
from pgqueue_sync.engine.schedule_store import Claimed, ScheduleStore
from pgqueue_sync.engine.scheduler import Scheduler
from pgqueue_sync.models import Job, JobId, JobStatus
from pgqueue_sync.options import RunOptions
from pgqueue_sync.sql import statements

from .model import LogRow, QueueModel, Row

__all__ = [
    "GUARD",
    "Crash",
    "CrashingStore",
    "Database",
    "Gates",
    "Hooks",
    "Key",
    "PgMachine",
    "Snapshot",
    "advance",
    "close_worker",
    "compare",
    "deliver_cancel",
    "expected_status",
    "idle_timeout",
    "make_worker",
    "observed",
    "run_machine",
    "snapshot",
    "stepped_scheduler",
]

Key = tuple[JobId, int]  # a job's attempt: (job id, attempt)

# Bound on every wait for another thread: reached only when the engine hangs (a failure).
GUARD = 20.0


class Database:
    """One example's queue: a schema of its own, a QueueManager on a ManualClock."""

    def __init__(self, dsn: str) -> None:
        self.dsn = dsn
        self.schema = f"h_{uuid.uuid4().hex[:12]}"
        self.settings = Settings(schema=self.schema)
        self.clock = ManualClock()
        # A lock held elsewhere fails the example instead of hanging it.
        self.conn: psycopg.Connection[Any] = psycopg.connect(
            dsn, autocommit=True, options="-c lock_timeout=20s"
        )
        self.driver = PsycopgDriver(self.conn)
        self.qm = QueueManager(self.driver, settings=self.settings, clock=self.clock)
        self.qm.queries.install()
        self.jobs_table = self.settings.ident("jobs").as_string(self.conn)
        self.log_table = self.settings.ident("log").as_string(self.conn)

    def now(self) -> datetime:
        return self.clock.now()

    def enqueue(
        self,
        n: int,
        *,
        entrypoints: list[str] | None = None,
        priorities: list[int] | None = None,
        delays: list[float] | None = None,
    ) -> list[JobId]:
        """Enqueue ``n`` jobs (of entrypoint "e" unless told), due after their delays."""
        return self.qm.queries.enqueue(
            entrypoints or ["e"] * n,
            [None] * n,
            priorities or 0,
            None if delays is None else [timedelta(seconds=d) for d in delays],
        )

    def rows(self) -> dict[JobId, Row]:
        """Each job's status, attempts, worker, heartbeat (while picked), due time, priority
        and whether its cancellation was requested."""
        with self.conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                "SELECT id, status::text, attempts, worker_id, heartbeat, execute_after, "
                f"priority, cancel_requested FROM {self.jobs_table}"
            )
            return {
                r[0]: (
                    JobStatus(r[1]),
                    r[2],
                    r[3],
                    r[4] if r[1] == "picked" else None,
                    r[5],
                    r[6],
                    r[7],
                )
                for r in cur.fetchall()
            }

    def log(self) -> list[LogRow]:
        with self.conn.cursor(row_factory=tuple_row) as cur:
            cur.execute(
                f"SELECT job_id, status::text, attempts, worker_id FROM {self.log_table} "
                "ORDER BY id"
            )
            return [(r[0], JobStatus(r[1]), r[2], r[3]) for r in cur.fetchall()]

    def close(self) -> None:
        try:
            self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            self.conn.close()


class PgMachine(RuleBasedStateMachine):
    """A state machine run against real tables: a fresh schema for each example."""

    dsn: ClassVar[str]

    def __init__(self) -> None:
        super().__init__()
        self.db = Database(self.dsn)


def run_machine(machine: type[PgMachine], dsn: str, **overrides: Any) -> None:
    """Run ``machine`` against the database at ``dsn``, with the current profile's settings."""
    bound = type(machine.__name__, (machine,), {"dsn": dsn})
    run_state_machine_as_test(bound, settings=settings(settings(), **overrides))


def compare(db: Database, model: QueueModel) -> None:
    """The tables hold exactly what the model says, job by job and outcome by outcome."""
    rows = db.rows()
    expected = {i: j.row() for i, j in model.jobs.items()}
    if rows != expected:
        diff = {
            i: (rows.get(i), expected.get(i))
            for i in sorted(rows.keys() | expected.keys())
            if rows.get(i) != expected.get(i)
        }
        raise AssertionError(f"queue table differs from the model (table, model): {diff}")
    log = db.log()
    # Outcomes written in one statement are logged in any order: compare as sorted lists.
    if sorted(log, key=repr) != sorted(model.log, key=repr):
        raise AssertionError(f"log differs from the model: {log} != {model.log}")


def make_worker(
    db: Database,
    *,
    batch_size: int = 3,
    buffer_size: int = 4,
    workers: int = 1,
    retry_timer: float = 30.0,
    heartbeat_interval: float = 10.0,
) -> Worker:
    """A Worker built as ``run()`` builds it, to be driven one step at a time."""
    options = RunOptions.build(
        dequeue_timeout=3600.0,
        batch_size=batch_size,
        retry_timer=retry_timer,
        workers=workers,
        buffer_size=buffer_size,
        shutdown_timeout=None,
        mode="continuous",
        heartbeat_interval=heartbeat_interval,
    )
    return Worker(
        driver=db.driver,
        settings=db.settings,
        clock=db.clock,
        registry=db.qm.entrypoints,
        options=options,
        shutdown=threading.Event(),
        mailbox=Mailbox(),
    )


# -- the engine's insides: every access to them is here, so a change of the engine's layout
# changes this block only -------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Snapshot:
    """What a worker holds, read at one instant: each held job's attempt, the attempts
    waiting in its buffer (in order), and the ones being run."""

    held: dict[JobId, int]
    buffered: list[Key]
    running: set[Key]


def snapshot(worker: Worker) -> Snapshot:
    now = worker.snapshot()
    held = {i: j.attempts for i, j in now.held.items()}
    running = {key for key in now.running if held.get(key[0]) == key[1]}
    return Snapshot(held, now.buffered, running)


def idle_timeout(worker: Worker) -> float:
    """How long the worker sleeps after an empty claim (without a NOTIFY)."""
    return worker.fetcher.idle_timeout()


def deliver_cancel(worker: Worker, job_ids: list[JobId]) -> None:
    """What the worker does when its listener hears a cancel NOTIFY for ``job_ids``: it
    reads their ``cancel_requested`` from the table (the flusher's step)."""
    worker.on_event(events.Cancel(tuple(job_ids)))
    worker.flusher.read_cancellations()


def close_worker(worker: Worker) -> None:
    """Close the connections a stepped worker opened (``run()`` does this itself)."""
    worker.buffer.close()
    worker.completions.close()
    for conn in worker.connections.values():
        conn.close()


class Crash(BaseException):
    """A worker process dies here (not an error the engine would catch and retry)."""


class CrashingStore(ScheduleStore):
    """A worker's schedule statements on a fetch connection of its own (as a worker's), which
    make it die in the middle of a claim when told: ``crash = (schedule, "locked")`` dies
    holding the row, before writing (the claim's transaction is rolled back); ``"committed"``
    dies once the claim committed, before the worker learns what it enqueued."""

    crash: tuple[str, str] | None = None

    def __init__(self, db: Database, clock: Clock) -> None:
        session = (statements(db.settings).fetch_session,)
        self.connection = ManagedConnection(db.driver, "fetch:machine", setup=session)
        super().__init__(self.connection, db.settings, clock=clock)

    def claim(self, name: str, cron: Callable[[str, str], Cron]) -> Claimed | None:
        if self.crash == (name, "locked"):

            def dying(expression: str, zone: str) -> Cron:
                raise Crash

            return super().claim(name, dying)
        claimed = super().claim(name, cron)
        if self.crash == (name, "committed"):
            raise Crash
        return claimed


def stepped_scheduler(db: Database, clock: Clock) -> tuple[Scheduler, CrashingStore]:
    """The Scheduler of ``db.qm``'s schedules on ``clock``, stepped by its ``tick()``."""
    store = CrashingStore(db, clock)
    return Scheduler(store=store, clock=clock, registry=db.qm.entrypoints), store


class Hooks:
    """What an observed worker reports while ``run()`` drives it (see ``observed``)."""

    def fetched(self, worker: Worker, jobs: list[Job], after_stop: bool) -> None:
        """After each claim (``jobs``: what it took; ``after_stop``: the fetch loop had
        already seen the stop). Runs on the fetcher's thread: blocking here holds it."""

    def shutting_down(self, worker: Worker) -> None:
        """When the worker leaves its fetch loop to shut down."""

    def forgot(self, worker: Worker) -> None:
        """Each time the worker stops holding some jobs."""


def observed(hooks: Hooks) -> type[Worker]:
    """A Worker class (for ``QueueManager.worker_class``) that reports its fetches (and
    whether one came after its fetch loop saw the stop), the start of its shutdown and each
    time it stops holding jobs, through the engine's hooks."""

    class Observer(WorkerHooks):
        def __init__(self) -> None:
            self.worker: Worker | None = None
            self.saw_stop = False

        def worker_started(self, worker: Worker) -> None:
            self.worker = worker

        def claimed(self, jobs: Sequence[Job]) -> None:
            assert self.worker is not None
            hooks.fetched(self.worker, list(jobs), self.saw_stop)

        def stop_seen(self) -> None:
            self.saw_stop = True

        def shutting_down(self) -> None:
            assert self.worker is not None
            hooks.shutting_down(self.worker)

        def jobs_forgotten(self) -> None:
            assert self.worker is not None
            hooks.forgot(self.worker)

    class Observed(Worker):
        def __init__(self, **kwargs: Any) -> None:
            observer = Observer()
            hooks_list = kwargs.pop("hooks", None) or HookList()
            super().__init__(**kwargs, hooks=HookList([*hooks_list.hooks, observer]))
            observer.worker = self

    return Observed


class Gates:
    """Handlers that block until the test says how they end: return, raise, or SystemExit.

    ``handler`` is registered as the entrypoint; ``entered`` tells which attempts are inside
    it. Every change is announced on ``cond``, so a test waits for a state, never for time.
    """

    OK = "ok"
    RAISE = "raise"
    EXIT = "exit"

    def __init__(self) -> None:
        self.cond = threading.Condition()
        self.entered: set[tuple[JobId, int]] = set()
        self.returned: set[tuple[JobId, int]] = set()
        self._actions: dict[tuple[JobId, int], str] = {}
        self._open_all = False

    def handler(self, job: Job) -> None:
        key = (job.id, job.attempts)
        with self.cond:
            self.entered.add(key)
            self.cond.notify_all()
            if not self.cond.wait_for(lambda: key in self._actions or self._open_all, GUARD):
                raise AssertionError(f"job {key} was never released by the test")
            action = self._actions.pop(key, self.OK)
        try:
            if action == self.RAISE:
                raise RuntimeError(f"job {job.id} failed on purpose")
            if action == self.EXIT:
                sys.exit(3)
        finally:
            with self.cond:
                self.entered.discard(key)
                self.returned.add(key)
                self.cond.notify_all()

    def release(self, key: tuple[JobId, int], action: str) -> None:
        with self.cond:
            self._actions[key] = action
            self.cond.notify_all()

    def open_all(self) -> None:
        """Let every handler, present and future, return."""
        with self.cond:
            self._open_all = True
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[], bool], what: str, timeout: float = GUARD) -> None:
        """Wait until ``predicate()`` holds (re-checked at each change, and every 50 ms for
        state that no one announces, such as rows in the database)."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                if time.monotonic() > deadline:
                    raise AssertionError(f"timed out waiting for {what}")
                self.cond.wait(0.05)

    def notify(self) -> None:
        with self.cond:
            self.cond.notify_all()


def expected_status(action: str) -> JobStatus:
    """How an attempt that ended with ``action`` is logged (no retry policy)."""
    return JobStatus.SUCCESSFUL if action == Gates.OK else JobStatus.EXCEPTION


def advance(db: Database, seconds: float) -> None:
    db.clock.advance(timedelta(seconds=seconds))
