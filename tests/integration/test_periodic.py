"""Periodic jobs on a real PostgreSQL: declared schedules, ticks enqueued once by any number of
workers, the jobs they make, pause/resume/run/remove, orphans, and the CLI."""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import psycopg
import pytest

from pgqueue_sync import (
    Job,
    JobStatus,
    ManualClock,
    PsycopgDriver,
    QueueManager,
    ScheduleNotFoundError,
    Settings,
)
from pgqueue_sync.cli import main
from pgqueue_sync.connection import ManagedConnection
from pgqueue_sync.engine.scheduler import REFRESH_INTERVAL, Scheduler
from pgqueue_sync.sql import statements
from pgqueue_sync_aio import AsyncQueueManager
from tests.conftest import Runner

UTC = timezone.utc
T0 = datetime(2030, 1, 1, tzinfo=UTC)
Conn = psycopg.Connection[Any]


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0 + timedelta(seconds=0.5))


@pytest.fixture
def cqm(driver: PsycopgDriver, settings: Settings, clock: ManualClock) -> QueueManager:
    manager = QueueManager(driver, settings=settings, clock=clock)
    manager.queries.install()
    return manager


@pytest.fixture
def schedulers(dsn: str) -> Iterator[Callable[[QueueManager], Scheduler]]:
    """Schedulers as a worker builds them: over a fetch connection of their own."""
    opened: list[ManagedConnection] = []

    def make(qm: QueueManager) -> Scheduler:
        session = (statements(qm.settings).fetch_session,)
        conn = ManagedConnection(PsycopgDriver(dsn), "fetch:test", setup=session)
        opened.append(conn)
        return Scheduler.over(conn, qm.settings, qm.clock, qm.entrypoints)

    yield make
    for conn in opened:
        conn.close()


def ticks_of(conn: Conn, settings: Settings, name: str) -> list[datetime]:
    """The ticks of every job ``name``'s schedule enqueued (queued, running or logged), by
    their headers; for the jobs still queued, their execute_after must be the tick."""
    jobs, log = settings.ident("jobs").as_string(conn), settings.ident("log").as_string(conn)
    rows = conn.execute(
        f"SELECT execute_after, headers FROM {jobs} WHERE entrypoint = %s "
        f"UNION ALL SELECT NULL, headers FROM {log} WHERE entrypoint = %s",
        (name, name),
    ).fetchall()
    ticks = []
    for due, headers in rows:
        if headers["tick"] is None:
            continue  # a manual run
        tick = datetime.fromisoformat(headers["tick"])
        assert due is None or due == tick
        ticks.append(tick)
    return sorted(ticks)


def noop(job: Job) -> None:
    pass


# -- declaring and enqueueing -----------------------------------------------------------------


def test_a_declared_schedule_enqueues_each_tick_as_an_ordinary_job_due_at_the_tick(
    cqm: QueueManager,
    clock: ManualClock,
    conn: Conn,
    settings: Settings,
    schedulers: Callable[[QueueManager], Scheduler],
) -> None:
    cqm.periodic("* * * * * */10", name="every10", priority=7, payload=b"p")(noop)
    scheduler = schedulers(cqm)
    assert scheduler.tick() == pytest.approx(9.5)  # declared; the first tick is at :10
    [info] = cqm.queries.schedules()
    assert (info.name, info.expression, info.timezone, info.catch_up) == (
        "every10",
        "* * * * * */10",
        "UTC",
        "latest",
    )
    assert info.next_tick == T0 + timedelta(seconds=10)
    assert (info.last_tick, info.last_job_id, info.paused, info.orphaned) == (
        None,
        None,
        False,
        False,
    )
    clock.advance(9)
    assert scheduler.tick() == pytest.approx(0.5)  # not due yet: nothing asked
    assert ticks_of(conn, settings, "every10") == []
    clock.advance(25)  # 00:00:34.5
    assert scheduler.tick() == pytest.approx(5.5)
    expected = [T0 + timedelta(seconds=s) for s in (10, 20, 30)]
    assert ticks_of(conn, settings, "every10") == expected
    jobs = cqm.queries.get_jobs(range(1, 4))
    assert [(j.entrypoint, j.priority, j.payload, j.status) for j in jobs] == [
        ("every10", 7, b"p", JobStatus.QUEUED)
    ] * 3
    assert [j.headers for j in jobs] == [
        {"schedule": "every10", "tick": t.isoformat()} for t in expected
    ]
    [info] = cqm.queries.schedules()
    assert (info.last_tick, info.last_job_id, info.last_status) == (
        expected[-1],
        3,
        JobStatus.QUEUED,
    )
    assert info.next_tick == T0 + timedelta(seconds=40)


def test_many_workers_claiming_at_the_same_instant_enqueue_each_tick_once(
    cqm: QueueManager,
    clock: ManualClock,
    conn: Conn,
    settings: Settings,
    schedulers: Callable[[QueueManager], Scheduler],
) -> None:
    cqm.periodic("* * * * * *", name="second")(noop)
    cqm.periodic("* * * * * */3", name="third", catch_up="all")(noop)
    workers = [schedulers(cqm) for _ in range(6)]
    for w in workers:
        w.tick()
    barrier = threading.Barrier(len(workers))
    errors: list[BaseException] = []

    def claim(w: Scheduler) -> None:
        try:
            barrier.wait(10)
            w.tick(force=True)
        except BaseException as exc:
            errors.append(exc)

    for step in [1, 2.5, 0.3, 7, 1, 13, 0.7, 4]:
        clock.advance(step)
        threads = [threading.Thread(target=claim, args=(w,)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
        assert not errors
    end = clock.now()
    seconds = ticks_of(conn, settings, "second")
    assert seconds == [
        T0 + timedelta(seconds=s) for s in range(1, int(end.timestamp() - T0.timestamp()) + 1)
    ]
    thirds = ticks_of(conn, settings, "third")
    assert thirds == [t for t in seconds if t.second % 3 == 0]
    assert sum(w.enqueued for w in workers) == len(seconds) + len(thirds)


def test_a_changed_declaration_replaces_the_row_and_never_repeats_a_tick(
    driver: PsycopgDriver,
    settings: Settings,
    clock: ManualClock,
    conn: Conn,
    schedulers: Callable[[QueueManager], Scheduler],
) -> None:
    old = QueueManager(driver, settings=settings, clock=clock)
    old.queries.install()
    old.periodic("* * * * * */10", name="job")(noop)
    first = schedulers(old)
    first.tick()
    clock.advance(10)
    first.tick()  # 00:00:10 enqueued
    new = QueueManager(driver, settings=settings, clock=clock)
    new.periodic("* * * * * *", name="job", timezone="Europe/Paris", catch_up="none")(noop)
    second = schedulers(new)
    second.tick()  # declares the new definition: next tick 00:00:11
    [info] = new.queries.schedules()
    assert (info.expression, info.timezone, info.catch_up) == (
        "* * * * * *",
        "Europe/Paris",
        "none",
    )
    assert info.next_tick == T0 + timedelta(seconds=11)
    clock.advance(3)
    first.tick(force=True)  # the old worker follows the row, not its own declaration
    second.tick(force=True)
    assert ticks_of(conn, settings, "job") == [T0 + timedelta(seconds=s) for s in (10, 11, 12, 13)]


def test_pause_skips_ticks_resume_starts_after_now_and_run_enqueues_one_now(
    cqm: QueueManager,
    clock: ManualClock,
    conn: Conn,
    settings: Settings,
    schedulers: Callable[[QueueManager], Scheduler],
) -> None:
    cqm.periodic("* * * * * *", name="s", payload=b"x")(noop)
    scheduler = schedulers(cqm)
    scheduler.tick()
    cqm.queries.pause_schedule("s")
    clock.advance(5)
    scheduler.tick(force=True)  # 1..5 fall while paused: skipped
    assert ticks_of(conn, settings, "s") == []
    [job_id] = [cqm.queries.run_schedule("s")]
    [job] = cqm.queries.get_jobs([job_id])
    assert (job.entrypoint, job.payload, job.execute_after) == ("s", b"x", clock.now())
    assert job.headers == {"schedule": "s", "tick": None}
    assert cqm.queries.schedules()[0].last_job_id == job_id
    clock.advance(2)
    assert cqm.queries.resume_schedule("s") == T0 + timedelta(seconds=8)
    scheduler.tick(force=True)
    clock.advance(1)
    scheduler.tick(force=True)
    assert ticks_of(conn, settings, "s") == [clock.now() - timedelta(seconds=0.5)]
    for call in (
        cqm.queries.pause_schedule,
        cqm.queries.resume_schedule,
        cqm.queries.run_schedule,
        cqm.queries.remove_schedule,
    ):
        with pytest.raises(ScheduleNotFoundError, match="no schedule named 'nope'"):
            call("nope")


def test_a_schedule_no_worker_declares_any_more_is_shown_as_orphaned_not_deleted(
    cqm: QueueManager,
    clock: ManualClock,
    schedulers: Callable[[QueueManager], Scheduler],
) -> None:
    cqm.periodic("0 * * * *", name="hourly")(noop)
    scheduler = schedulers(cqm)
    scheduler.tick()
    for _ in range(10):  # a running worker says so at every refresh
        clock.advance(REFRESH_INTERVAL)
        scheduler.tick()
        assert not cqm.queries.schedules()[0].orphaned
    clock.advance(timedelta(minutes=6))  # its workers are gone (or the code dropped it)
    [info] = cqm.queries.schedules()
    assert info.orphaned
    cqm.queries.remove_schedule("hourly")
    assert cqm.queries.schedules() == []
    scheduler.tick()  # a worker that still declares it puts it back
    assert [i.name for i in cqm.queries.schedules()] == ["hourly"]


def test_ticks_across_both_dst_changes_in_paris(
    driver: PsycopgDriver,
    settings: Settings,
    conn: Conn,
    schedulers: Callable[[QueueManager], Scheduler],
) -> None:
    for start, expected in [
        (
            datetime(2024, 3, 30, 12, tzinfo=UTC),
            ["2024-03-31T01:00:00+00:00", "2024-04-01T00:30:00+00:00"],
        ),
        (
            datetime(2024, 10, 26, 12, tzinfo=UTC),
            ["2024-10-27T00:30:00+00:00", "2024-10-27T01:30:00+00:00", "2024-10-28T01:30:00+00:00"],
        ),
    ]:
        clock = ManualClock(start)
        qm = QueueManager(driver, settings=settings, clock=clock)
        qm.queries.install()
        qm.periodic("30 2 * * *", name="nightly", timezone="Europe/Paris")(noop)
        scheduler = schedulers(qm)
        scheduler.tick()
        for _ in range(2 * 24 * 6):  # two days, a worker looking every 10 minutes
            clock.advance(600)
            scheduler.tick()
        assert [t.isoformat() for t in ticks_of(conn, settings, "nightly")] == expected
        qm.queries.uninstall()


# -- a running worker -------------------------------------------------------------------------


def test_an_idle_worker_wakes_for_the_next_tick_and_runs_its_job(
    qm: QueueManager, runner: Callable[..., Runner]
) -> None:
    ran: list[Job] = []
    done = threading.Event()

    @qm.periodic("* * * * * *")
    def every_second(job: Job) -> None:
        ran.append(job)
        done.set()

    started = time.monotonic()
    r = runner(qm, dequeue_timeout=30.0)  # no NOTIFY comes: only the tick's timer wakes it
    assert done.wait(10)
    r.stop()
    assert time.monotonic() - started < 5  # not dequeue_timeout
    job = ran[0]
    assert job.headers is not None
    assert job.headers["schedule"] == "every_second"
    assert datetime.fromisoformat(job.headers["tick"]) == job.execute_after
    assert job.execute_after.microsecond == 0
    [info] = qm.queries.schedules()
    assert info.last_status is not None


def test_the_async_manager_declares_async_schedules(
    driver: PsycopgDriver, settings: Settings
) -> None:
    aqm = AsyncQueueManager(driver, settings=settings)
    ran: list[int] = []

    @aqm.periodic("* * * * * *", name="tick")
    async def tick(job: Job) -> None:
        ran.append(job.id)
        aqm.alive = False

    async def main_() -> None:
        await aqm.queries.install()
        with anyio.fail_after(20):
            await aqm.run(dequeue_timeout=30.0)
        infos = await aqm.queries.schedules()
        assert [i.name for i in infos] == ["tick"]

    anyio.run(main_)
    assert ran
    assert aqm.entrypoints["tick"].func is tick


# -- the CLI ----------------------------------------------------------------------------------


def test_the_cli_lists_pauses_resumes_runs_and_removes_schedules(
    cqm: QueueManager,
    schedulers: Callable[[QueueManager], Scheduler],
    conn: Conn,
    settings: Settings,
    capsys: pytest.CaptureFixture[str],
) -> None:
    cqm.periodic("*/5 * * * *", name="cleanup", timezone="Europe/Paris")(noop)
    schedulers(cqm).tick()
    common = ["--dsn", conn.info.dsn, "--schema", settings.schema]
    assert main(["schedules", *common]) == 0
    out = capsys.readouterr().out
    # One row per schedule, its columns as wide as the table needs.
    assert re.search(r"^cleanup +\*/5 \* \* \* \* +Europe/Paris +latest ", out, re.MULTILINE), out
    assert main(["schedules", "--json", *common]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert listed["name"] == "cleanup"
    assert listed["next_tick"] == (T0 + timedelta(minutes=5)).isoformat()
    assert listed["paused"] is False

    assert main(["schedules", "pause", "cleanup", *common]) == 0
    assert "paused" in capsys.readouterr().out
    assert main(["schedules", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out)[0]["paused"] is True
    assert main(["schedules", "run", "cleanup", "--json", *common]) == 0
    ran = json.loads(capsys.readouterr().out)
    assert ran == {"name": "cleanup", "job_id": 1}
    assert main(["schedules", "resume", "cleanup", *common]) == 0
    assert "resumed: next tick" in capsys.readouterr().out
    assert main(["schedules", "--json", *common]) == 0
    [listed] = json.loads(capsys.readouterr().out)
    assert (listed["paused"], listed["last_job_id"], listed["last_status"]) == (False, 1, "queued")

    assert main(["schedules", "pause", "nope", *common]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no schedule named 'nope'")
    assert main(["schedules", "pause", *common]) == 2  # NAME missing
    capsys.readouterr()
    assert main(["schedules", "remove", "cleanup", *common]) == 0
    assert main(["schedules", "--json", *common]) == 0
    assert json.loads(capsys.readouterr().out.splitlines()[-1] or "[]") == []


def test_resuming_a_schedule_that_is_not_paused_leaves_its_due_ticks_due(
    cqm: QueueManager,
    clock: ManualClock,
    conn: Conn,
    settings: Settings,
    schedulers: Callable[[QueueManager], Scheduler],
) -> None:
    cqm.periodic("* * * * * */15", name="q")(noop)
    scheduler = schedulers(cqm)
    scheduler.tick()
    clock.advance(20)  # 00:00:15 is due, and no worker has claimed it yet
    assert cqm.queries.resume_schedule("q") == T0 + timedelta(seconds=15)
    scheduler.tick(force=True)
    assert ticks_of(conn, settings, "q") == [T0 + timedelta(seconds=15)]
