"""Several workers declaring the same schedules, stepped on a clock moved by hand (forward, and
back by less than a tick), crashing (before their claim writes, or after it committed), frozen
while they hold a schedule's row, restarted after downtime; operators pausing and resuming.

Checked after every step: no tick is ever enqueued twice; the jobs and each schedule's cursor
are what a reference model says; every tick that falls while workers keep claiming (at most
``MISSED_AFTER`` apart) is enqueued; after downtime, catch-up follows the schedule's policy.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
from croniter import croniter
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule
from psycopg import sql

from pgqueue_sync.cron import MISSED_AFTER, CatchUp
from pgqueue_sync.engine.scheduler import Scheduler
from pgqueue_sync.models import Job

from .harness import Crash, CrashingStore, PgMachine, run_machine, stepped_scheduler

UTC = timezone.utc
# name -> (expression, catch_up, catch_up_limit): a policy each; names in claim order.
SCHEDULES: dict[str, tuple[str, CatchUp, int]] = {
    "fifteen": ("* * * * * */15", "all", 3),
    "minute": ("* * * * *", "none", 100),
    "ten": ("* * * * * */10", "latest", 100),
}
MAX_WORKERS = 3


class JumpClock:
    """A clock whose wall time can be set back (an NTP step); its monotonic time only goes
    forward, by as much as the wall moved either way."""

    def __init__(self) -> None:
        self.wall = datetime(2030, 1, 1, 0, 0, 0, 500000, tzinfo=UTC)
        self.mono = 1000.0

    def monotonic(self) -> float:
        return self.mono

    def now(self) -> datetime:
        return self.wall

    def step(self, seconds: float) -> None:
        self.wall += timedelta(seconds=seconds)
        self.mono += abs(seconds)


@dataclasses.dataclass
class Model:
    """What the tables must hold: each schedule's cursor, pause, and ticks enqueued."""

    cursor: dict[str, datetime] = dataclasses.field(default_factory=dict)
    paused: dict[str, bool] = dataclasses.field(default_factory=dict)
    ticks: dict[str, list[datetime]] = dataclasses.field(default_factory=dict)
    # Wall time of the latest claim of each schedule (any worker), and whether it was paused
    # at any point since: the liveness check needs both.
    claimed_at: dict[str, datetime] = dataclasses.field(default_factory=dict)
    paused_since: dict[str, bool] = dataclasses.field(default_factory=dict)


def naive_ticks(expression: str, start: datetime, end: datetime) -> list[datetime]:
    """Ticks ``start <= t <= end``, counted one by one from a second before ``start``."""
    it = croniter(expression, start - timedelta(seconds=1))
    found: list[datetime] = []
    while True:
        tick: datetime = it.get_next(datetime)
        if tick > end:
            return found
        if tick >= start:
            found.append(tick.astimezone(UTC))


def first_after(expression: str, t: datetime) -> datetime:
    tick: datetime = croniter(expression, t).get_next(datetime)
    return tick.astimezone(UTC)


class ScheduleMachine(PgMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = JumpClock()
        self.db.qm.clock = self.clock
        self.db.qm.queries.clock = self.clock
        for name, (expression, catch_up, limit) in SCHEDULES.items():
            self.db.qm.periodic(
                expression,
                name=name,
                catch_up=catch_up,
                catch_up_limit=limit,
            )(self.handler)
        self.model = Model()
        self.workers: list[tuple[Scheduler, CrashingStore]] = []
        self.frozen: tuple[str, psycopg.Connection[Any]] | None = None
        self.start_worker()

    def handler(self, job: Job) -> None:
        raise AssertionError("no job runs here")

    def teardown(self) -> None:
        try:
            for _, store in self.workers:
                store.connection.close()
            if self.frozen is not None:
                self.frozen[1].close()
        finally:
            self.db.close()

    # -- the model -------------------------------------------------------------------------

    def model_claim(self, name: str) -> None:
        """What a claim of ``name`` at the clock's time does."""
        if self.frozen is not None and self.frozen[0] == name:
            return  # another worker holds the row: skipped
        expression, catch_up, limit = SCHEDULES[name]
        now, cursor = self.clock.now(), self.model.cursor[name]
        previous = self.model.claimed_at.get(name)
        if previous is None or now > previous:
            self.model.claimed_at[name] = now
            self.check_live(name, previous, now)
        if now < cursor:
            return
        due = naive_ticks(expression, cursor, now)
        assert due[0] == cursor
        self.model.cursor[name] = first_after(expression, now)
        if self.model.paused[name]:
            return
        if now - due[0] <= MISSED_AFTER:
            enqueued = due
        elif catch_up == "latest":
            enqueued = due[-1:]
        elif catch_up == "none":
            enqueued = []
        else:
            enqueued = due[-limit:]
        self.model.ticks[name] += enqueued

    def check_live(self, name: str, previous: datetime | None, now: datetime) -> None:
        """Remembered for after the claim: ticks since the previous claim, if it is at most
        MISSED_AFTER old and the schedule was not paused since, must all be enqueued."""
        if (
            previous is not None
            and now - previous <= MISSED_AFTER
            and not self.model.paused_since.get(name)
        ):
            self.live_checks.append((name, previous, now))
        self.model.paused_since[name] = self.model.paused[name]

    live_checks: list[tuple[str, datetime, datetime]]

    def model_declare(self) -> None:
        for name, (expression, _, _) in SCHEDULES.items():
            if name not in self.model.cursor:
                now = self.clock.now()
                self.model.cursor[name] = first_after(expression, now)
                self.model.paused[name] = False
                self.model.ticks[name] = []

    # -- steps -----------------------------------------------------------------------------

    def run_tick(self, i: int, crash: tuple[str, str] | None = None) -> None:
        scheduler, store = self.workers[i]
        store.crash = crash
        self.live_checks = []
        names = list(SCHEDULES)
        try:
            scheduler.tick(force=True)
        except Crash:
            assert crash is not None
            store.connection.close()
            del self.workers[i]
            stop = names.index(crash[0])
            names = names[: stop + (crash[1] == "committed")]
        else:
            assert scheduler.failures == 0, "a claim failed"
        for name in names:
            self.model_claim(name)

    @precondition(lambda self: len(self.workers) < MAX_WORKERS and self.frozen is None)
    @rule()
    def start_worker(self) -> None:
        self.workers.append(stepped_scheduler(self.db, self.clock))
        self.model_declare()
        self.run_tick(len(self.workers) - 1)

    @precondition(lambda self: self.workers)
    @rule(data=st.data())
    def tick(self, data: st.DataObject) -> None:
        self.run_tick(data.draw(st.integers(0, len(self.workers) - 1), label="worker"))

    @precondition(lambda self: self.workers)
    @rule(
        data=st.data(),
        name=st.sampled_from(sorted(SCHEDULES)),
        point=st.sampled_from(["locked", "committed"]),
    )
    def crash_mid_claim(self, data: st.DataObject, name: str, point: str) -> None:
        i = data.draw(st.integers(0, len(self.workers) - 1), label="worker")
        self.run_tick(i, crash=(name, point))

    @rule(seconds=st.floats(0.1, 40))
    def advance(self, seconds: float) -> None:
        self.clock.step(seconds)

    @rule(seconds=st.floats(0.1, 9.9))
    def jump_back(self, seconds: float) -> None:
        """An NTP step back, by less than the shortest period (10 s)."""
        self.clock.step(-seconds)

    @precondition(lambda self: self.workers)
    @rule(seconds=st.floats(61, 900))
    def downtime(self, seconds: float) -> None:
        """Every worker stops; the clock runs; one starts again and catches up."""
        for _, store in self.workers:
            store.connection.close()
        self.workers = []
        self.thaw()
        self.clock.step(seconds)
        self.start_worker()

    @precondition(lambda self: self.frozen is None and self.workers)
    @rule(name=st.sampled_from(sorted(SCHEDULES)))
    def freeze(self, name: str) -> None:
        """A worker stops (SIGSTOP) while it holds a schedule's row."""
        conn = psycopg.connect(self.dsn, autocommit=False)
        conn.execute(
            sql.SQL("SELECT 1 FROM {} WHERE name = %s FOR UPDATE").format(
                self.db.settings.ident("schedules")
            ),
            (name,),
        )
        self.frozen = (name, conn)

    @precondition(lambda self: self.frozen is not None)
    @rule()
    def thaw(self) -> None:
        if self.frozen is not None:
            self.frozen[1].close()  # its session ends: the row's lock goes
            self.frozen = None

    @precondition(lambda self: self.frozen is None)
    @rule(name=st.sampled_from(sorted(SCHEDULES)), pause=st.booleans())
    def pause_or_resume(self, name: str, pause: bool) -> None:
        if pause:
            self.db.qm.queries.pause_schedule(name)
            self.model.paused[name] = True
            self.model.paused_since[name] = True
        else:
            self.db.qm.queries.resume_schedule(name)
            expression = SCHEDULES[name][0]
            now = self.clock.now()
            if self.model.paused[name]:  # resuming a running schedule changes nothing
                first = first_after(expression, now)
                self.model.cursor[name] = max(self.model.cursor[name], first)
            self.model.paused[name] = False

    # -- checks ----------------------------------------------------------------------------

    def stored(self) -> tuple[dict[str, list[datetime]], dict[str, datetime]]:
        conn = self.db.conn
        jobs = self.db.settings.ident("jobs").as_string(conn)
        schedules = self.db.settings.ident("schedules").as_string(conn)
        ticks: dict[str, list[datetime]] = {name: [] for name in SCHEDULES}
        for name, headers, due in conn.execute(
            f"SELECT entrypoint, headers, execute_after FROM {jobs} ORDER BY id"
        ).fetchall():
            tick = datetime.fromisoformat(headers["tick"])
            assert due == tick, "a tick's job is due at the tick"
            ticks[name].append(tick)
        cursors = dict(conn.execute(f"SELECT name, next_tick FROM {schedules}").fetchall())
        return ticks, cursors

    @invariant()
    def tables_match_the_model(self) -> None:
        ticks, cursors = self.stored()
        for name in SCHEDULES:
            assert len(set(ticks[name])) == len(ticks[name]), f"{name}: a tick enqueued twice"
            assert sorted(ticks[name]) == sorted(self.model.ticks.get(name, [])), name
        assert cursors == self.model.cursor

    @invariant()
    def ticks_while_workers_claim_are_all_enqueued(self) -> None:
        ticks, _ = self.stored()
        for name, previous, now in getattr(self, "live_checks", []):
            expected = naive_ticks(SCHEDULES[name][0], previous + timedelta(microseconds=1), now)
            missing = sorted(set(expected) - set(ticks[name]))
            assert not missing, f"{name}: ticks {missing} fell while workers claimed"


def test_schedule_machine(dsn: str) -> None:
    run_machine(ScheduleMachine, dsn)
