"""Outcomes PostgreSQL refuses, and writes that keep failing, never stall a worker."""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue_sync import Job, JobStatus, QueueManager, Settings
from tests.conftest import Runner, eventually

Start = Callable[..., Runner]

SURROGATE = b"\xff".decode("utf-8", "surrogateescape")


def _bad_nan(job: Job) -> object:
    return {"ratio": float("nan")}


def _bad_inf(job: Job) -> object:
    return [float("inf")]


def _bad_nul_result(job: Job) -> object:
    return "a\x00b"


def _bad_surrogate_result(job: Job) -> object:
    return {"name": "x" + SURROGATE}


def _bad_opaque_result(job: Job) -> object:
    return {"when": object()}


def _bad_nul_error(job: Job) -> object:
    raise ValueError("a\x00b")


def _bad_surrogate_error(job: Job) -> object:
    raise ValueError("bad byte " + SURROGATE)


POISONS: dict[str, tuple[Callable[[Job], object], str]] = {
    # handler, text the recorded traceback must contain
    "nan": (_bad_nan, "NaN"),
    "inf": (_bad_inf, "Infinity"),
    "nul-result": (_bad_nul_result, "NUL"),
    "surrogate-result": (_bad_surrogate_result, "surrogate"),
    "opaque-result": (_bad_opaque_result, "object"),
    "nul-error": (_bad_nul_error, "a\\x00b"),
    "surrogate-error": (_bad_surrogate_error, "bad byte \\udcff"),
}


def picked(conn: psycopg.Connection[Any], settings: Settings) -> int:
    table = settings.ident("jobs").as_string(None)
    row = conn.execute(f"SELECT count(*) FROM {table} WHERE status = 'picked'").fetchone()
    assert row is not None
    return int(row[0])


@pytest.mark.parametrize("kind", sorted(POISONS))
def test_a_poison_outcome_fails_its_job_only(
    qm: QueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: Start,
    kind: str,
) -> None:
    handler, expected = POISONS[kind]

    @qm.entrypoint("good")
    def good(job: Job) -> object:
        return {"n": job.id}

    qm.entrypoint("bad")(handler)

    before = qm.queries.enqueue(["good"] * 5, [None] * 5)
    [bad] = qm.queries.enqueue("bad", None)
    after = qm.queries.enqueue(["good"] * 20, [None] * 20)
    r = runner(qm, workers=2, batch_size=5, retry_timer=4)
    results = {res.job_id: res for res in qm.queries.wait_for([*before, bad, *after], timeout=20)}
    stopped = time.monotonic()
    r.stop()
    assert time.monotonic() - stopped < 2.0
    for job_id in before + after:
        assert results[job_id].status is JobStatus.SUCCESSFUL
        assert results[job_id].value == {"n": job_id}
    assert results[bad].status is JobStatus.EXCEPTION
    assert expected in (results[bad].traceback or "")
    assert picked(conn, settings) == 0
    logged = Counter(e.job_id for e in qm.queries.history(limit=100))
    assert set(logged.values()) == {1}
    assert len(logged) == 26


@pytest.fixture
def refuse_log(conn: psycopg.Connection[Any], settings: Settings) -> Iterator[Callable[..., None]]:
    """Make the database refuse log rows: ``refuse_log(job_id=..., status=..., errcode=...)``.

    A trigger on the log table raises for matching rows, as a constraint, a domain or an
    extension of the user's could.
    """
    log = settings.ident("log").as_string(None)
    fn = f'"{settings.schema}".refuse_log'

    def install(
        job_id: int | None = None, status: str | None = None, errcode: str = "P0001"
    ) -> None:
        conn.execute(
            f"""
            CREATE OR REPLACE FUNCTION {fn}() RETURNS trigger LANGUAGE plpgsql AS $$
            BEGIN
                IF ({job_id if job_id is not None else "NULL"}::bigint IS NULL
                    OR NEW.job_id = {job_id if job_id is not None else 0})
                   AND ({"NULL" if status is None else repr(status)}::text IS NULL
                        OR NEW.status::text = {repr(status) if status else "''"}) THEN
                    RAISE EXCEPTION 'the log refuses job %', NEW.job_id
                        USING ERRCODE = '{errcode}';
                END IF;
                RETURN NEW;
            END $$;
            DROP TRIGGER IF EXISTS refuse_log ON {log};
            CREATE TRIGGER refuse_log BEFORE INSERT ON {log}
                FOR EACH ROW EXECUTE FUNCTION {fn}();
            """
        )

    yield install
    conn.execute(f"DROP TRIGGER IF EXISTS refuse_log ON {log}")


def test_a_row_the_database_refuses_is_split_out_and_recorded_as_an_exception(
    qm: QueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: Start,
    refuse_log: Callable[..., None],
) -> None:
    runs: Counter[int] = Counter()
    lock = threading.Lock()

    @qm.entrypoint("good")
    def good(job: Job) -> None:
        with lock:
            runs[job.id] += 1

    ids = qm.queries.enqueue(["good"] * 30, [None] * 30)
    victim = ids[7]
    refuse_log(job_id=victim, status="successful")
    r = runner(qm, workers=2, batch_size=10, retry_timer=4)
    results = {res.job_id: res for res in qm.queries.wait_for(ids, timeout=20)}
    r.stop()
    assert results[victim].status is JobStatus.EXCEPTION
    assert f"the log refuses job {victim}" in (results[victim].traceback or "")
    assert all(results[i].status is JobStatus.SUCCESSFUL for i in ids if i != victim)
    logged = Counter(e.job_id for e in qm.queries.history(limit=100))
    assert set(logged.values()) == {1}
    assert picked(conn, settings) == 0
    # The refused row's batch mates were written on the split, not run again later.
    assert runs == Counter(ids)


def heartbeat_of(conn: psycopg.Connection[Any], settings: Settings, job_id: int) -> Any:
    table = settings.ident("jobs").as_string(None)
    row = conn.execute(f"SELECT heartbeat FROM {table} WHERE id = %s", (job_id,)).fetchone()
    assert row is not None
    return row[0]


def test_heartbeats_keep_flowing_while_writes_fail(
    qm: QueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: Start,
    refuse_log: Callable[..., None],
) -> None:
    release = threading.Event()
    started = threading.Event()

    @qm.entrypoint("quick")
    def quick(job: Job) -> None:
        pass

    @qm.entrypoint("long")
    def long(job: Job) -> None:
        started.set()
        release.wait(30)

    # Every log row is refused with an error the database may stop raising (a lock not
    # available): the outcome is retried, never split out as refused.
    refuse_log(errcode="55P03")
    [done] = qm.queries.enqueue("quick", None)
    [running] = qm.queries.enqueue("long", None)
    r = runner(qm, workers=2, retry_timer=1.0, heartbeat_interval=0.05)
    assert started.wait(20)
    first = heartbeat_of(conn, settings, running)
    # Heartbeats go on for longer than retry_timer: both jobs stay this worker's (their
    # outcome unwritten, the finished one's too), never re-picked.
    span = timedelta(seconds=2.5)
    assert eventually(lambda: heartbeat_of(conn, settings, running) > first + span)
    assert eventually(lambda: heartbeat_of(conn, settings, done) > first + span)
    assert {job.attempts for job in qm.queries.get_jobs([done, running])} == {1}
    conn.execute(f"DROP TRIGGER refuse_log ON {settings.ident('log').as_string(None)}")
    release.set()
    results = qm.queries.wait_for([done, running], timeout=20)
    r.stop()
    assert [res.status for res in results] == [JobStatus.SUCCESSFUL] * 2
    assert Counter(e.job_id for e in qm.queries.history()) == {done: 1, running: 1}
    assert {e.attempts for e in qm.queries.history()} == {1}


def test_run_returns_by_the_shutdown_deadline_when_every_write_fails(
    qm: QueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    runner: Start,
    refuse_log: Callable[..., None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    ran = threading.Event()

    @qm.entrypoint("job")
    def job(job: Job) -> None:
        ran.set()

    refuse_log(errcode="55P03")
    # ... and the release at the deadline fails too (a job may not go back to queued).
    jobs = settings.ident("jobs").as_string(None)
    conn.execute(
        f"""
        CREATE FUNCTION "{settings.schema}".refuse_release() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION 'no release' USING ERRCODE = '55P03';
        END $$;
        CREATE TRIGGER refuse_release BEFORE UPDATE ON {jobs} FOR EACH ROW
            WHEN (NEW.status = 'queued') EXECUTE FUNCTION "{settings.schema}".refuse_release();
        """
    )
    ids = qm.queries.enqueue(["job"] * 3, [None] * 3)
    r = runner(qm, workers=1, retry_timer=2.0, shutdown_timeout=1.0)
    assert ran.wait(20)
    with caplog.at_level(logging.ERROR, logger="pgqueue_sync"):
        stopped = time.monotonic()
        r.stop()
        assert time.monotonic() - stopped < 1.0 + 1.0
    assert any("retry_timer" in rec.getMessage() for rec in caplog.records), caplog.text
    # What could not be written or released is left picked for retry_timer, never lost.
    assert picked(conn, settings) == len(ids)
