from __future__ import annotations

import os
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgqueue_sync import Job, JobStatus, PsycopgDriver, QueueManager, Settings
from tests.conftest import Runner

Start = Callable[..., Runner]


def picked(conn: psycopg.Connection[Any], settings: Settings) -> int:
    table = settings.ident("jobs").as_string(None)
    row = conn.execute(f"SELECT count(*) FROM {table} WHERE status = 'picked'").fetchone()
    assert row is not None
    return int(row[0])


def make_qm(
    driver: PsycopgDriver, settings: Settings, ledger: list[int], **hooks: Any
) -> QueueManager:
    qm = QueueManager(driver, settings=settings)
    lock = threading.Lock()

    @qm.entrypoint("slow")
    def slow(job: Job) -> None:
        time.sleep(0.02)  # the work itself, not synchronisation
        with lock:
            ledger.append(job.id)
            if "on_done" in hooks:
                hooks["on_done"](len(ledger))

    return qm


def test_stop_mid_run_then_a_new_worker_finishes_every_job_exactly_once(
    driver: PsycopgDriver, settings: Settings, conn: psycopg.Connection[Any], runner: Start
) -> None:
    n = 80
    first: list[int] = []
    enough = threading.Event()

    def on_done(k: int) -> None:
        if k >= 15:
            enough.set()

    qm = make_qm(driver, settings, first, on_done=on_done)
    qm.queries.install()
    ids = qm.queries.enqueue(["slow"] * n, [None] * n)
    r = runner(qm, workers=4, batch_size=5)
    assert enough.wait(60)
    r.stop()
    # Everything it had claimed finished (running and buffered jobs), nothing is left picked.
    assert picked(conn, settings) == 0
    assert 15 <= len(first) < n
    logged = {e.job_id for e in qm.queries.log(limit=n)}
    assert logged == set(first)

    second: list[int] = []
    qm2 = make_qm(driver, settings, second)
    runner(qm2, workers=4, mode="drain").join()
    assert Counter(first + second) == Counter(dict.fromkeys(ids, 1))
    assert qm2.queries.queue_size() == []


def test_shutdown_timeout_releases_what_has_not_finished(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings, runner: Start
) -> None:
    gate = threading.Event()
    entered = threading.Event()
    finished = threading.Event()

    @qm.entrypoint("blocked")
    def blocked(job: Job) -> None:
        entered.set()
        gate.wait(60)
        finished.set()

    ids = qm.queries.enqueue(["blocked"] * 5, [None] * 5)
    r = runner(qm, workers=1, batch_size=5, buffer_size=5, shutdown_timeout=0.3)
    assert entered.wait(30)
    r.stop()  # the handler is still blocked: run() returns at the deadline anyway
    assert picked(conn, settings) == 0
    jobs = {j.id: j for j in qm.queries.get_jobs(ids)}
    assert {j.status for j in jobs.values()} == {JobStatus.QUEUED}
    attempts = sorted(j.attempts for j in jobs.values())
    assert attempts == [0, 0, 0, 0, 1]  # only the job that had started used an attempt
    gate.set()  # the abandoned handler finishes late: its outcome must not be recorded
    assert finished.wait(10)
    assert qm.queries.log() == []

    qm.alive = True
    runner(qm, workers=2, mode="drain").join()
    log = qm.queries.log()
    assert sorted(e.job_id for e in log) == sorted(ids)
    assert {e.status for e in log} == {JobStatus.SUCCESSFUL}


def test_alive_false_from_a_signal_handler_stops_run_in_the_main_thread(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    count = 0

    @qm.entrypoint("sig")
    def handler(job: Job) -> None:
        nonlocal count
        count += 1
        if count == 3:
            os.kill(os.getpid(), signal.SIGINT)

    def on_signal(signum: int, frame: object) -> None:
        qm.alive = False

    qm.queries.enqueue(["sig"] * 200, [None] * 200)
    previous = signal.signal(signal.SIGINT, on_signal)
    try:
        qm.run(workers=1, batch_size=2, buffer_size=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert qm.alive is False
    assert picked(conn, settings) == 0
    assert 3 <= count < 200
    assert len(qm.queries.log(limit=500)) == count


def test_keyboard_interrupt_in_run_shuts_down_gracefully_and_propagates(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    count = 0

    @qm.entrypoint("kbd")
    def handler(job: Job) -> None:
        nonlocal count
        count += 1
        if count == 2:
            os.kill(os.getpid(), signal.SIGINT)

    qm.queries.enqueue(["kbd"] * 100, [None] * 100)
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(KeyboardInterrupt):
            qm.run(workers=1, batch_size=2, buffer_size=2)
    finally:
        signal.signal(signal.SIGINT, previous)
    assert picked(conn, settings) == 0
    assert len(qm.queries.log(limit=500)) == count


def test_run_after_alive_false_returns_until_rearmed(qm: QueueManager) -> None:
    @qm.entrypoint("x")
    def handler(job: Job) -> None:
        pass

    qm.alive = False
    qm.run()  # returns at once
    qm.alive = True
    qm.queries.enqueue("x", None)
    qm.run(mode="drain")
    assert len(qm.queries.log()) == 1


def test_run_is_not_reentrant(qm: QueueManager, runner: Start) -> None:
    running = threading.Event()

    @qm.entrypoint("x")
    def handler(job: Job) -> None:
        running.set()

    qm.queries.enqueue("x", None)
    r = runner(qm)
    assert running.wait(30)
    with pytest.raises(RuntimeError, match="already running"):
        qm.run()
    r.stop()
