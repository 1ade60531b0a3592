"""Backends cut, the server restarted, a listener killed, a link black-holed, a bad password."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest

from pgqueue_sync import ConnectError, Job, PsycopgDriver, Queries, QueueManager, Settings
from tests.conftest import Runner, eventually, fetcher_asleep, listening
from tests.faults.cluster import PrivateCluster
from tests.faults.conftest import Ledger, Workers
from tests.faults.proxy import Proxy
from tests.faults.test_workers import enqueue


def terminate(dsn: str | psycopg.Connection[Any], pattern: str) -> int:
    """Cut the backends whose application_name is LIKE ``pattern``; return how many."""
    statement = (
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name LIKE %s"
    )
    if isinstance(dsn, psycopg.Connection):
        return len(dsn.execute(statement, (pattern,)).fetchall())
    with psycopg.connect(dsn, autocommit=True) as conn:
        return len(conn.execute(statement, (pattern,)).fetchall())


def backends(conn: psycopg.Connection[Any], pattern: str) -> int:
    row = conn.execute(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s", (pattern,)
    ).fetchone()
    return int(row[0]) if row else 0


def resume_time(ledger: Ledger, timeout: float = 60.0) -> float:
    """Seconds until the count of finished jobs moves again."""
    start = time.monotonic()
    before = ledger.count()
    assert eventually(lambda: ledger.count() > before, timeout), "processing did not resume"
    return time.monotonic() - start


def test_backends_cut_every_few_seconds(
    fdsn: str, fschema: str, workers: Callable[..., Workers], ledger: Ledger
) -> None:
    n = 10_000
    enqueue(fdsn, fschema, n)
    pool = workers(threads=2, work_ms=2, retry_timer=5)
    procs = [pool.start(), pool.start()]
    gaps = []
    while ledger.count() < n:
        time.sleep(1.5)  # the fault schedule
        if ledger.count() >= n:
            break
        cut = terminate(fdsn, "pgqueue-sync:%")
        assert cut >= 3
        if ledger.count() < n:
            gaps.append(resume_time(ledger))
        assert all(p.poll() is None for p in procs), "a worker process exited"
    outputs = pool.stop_all()
    report = ledger.report(n, set())
    print(f"\n{len(gaps)} cuts, resumed after {max(gaps):.2f} s at most: {report}")
    assert len(gaps) >= 2
    assert max(gaps) < 5.0
    assert [code for code, _, _ in outputs] == [0, 0]
    assert not any("THREAD DIED" in err for _, _, err in outputs)
    assert report["lost"] == 0
    assert report["successful"] == n
    assert report["left_picked"] == report["left_queued"] == 0
    assert report["duplicates"] == 0  # no worker died: nothing ran twice


@pytest.mark.parametrize("mode", ["fast", "immediate"])
def test_postgres_restarts_under_a_running_worker(
    mode: str,
    cluster: PrivateCluster,
    fdsn: str,
    fschema: str,
    workers: Callable[..., Workers],
    ledger: Ledger,
) -> None:
    n = 4000
    enqueue(fdsn, fschema, n)
    pool = workers(threads=4, work_ms=3, retry_timer=10)
    proc = pool.start()
    assert eventually(lambda: ledger.count() >= 500, 60)
    cluster.restart(mode)  # returns once the server accepts connections again
    resumed = resume_time(ledger)
    assert eventually(lambda: ledger.count() >= n, 120), ledger.report(n, set())
    assert proc.poll() is None, "the worker process exited"
    outputs = pool.stop_all()
    report = ledger.report(n, set())
    print(f"\nrestart ({mode}): resumed {resumed:.2f} s after the server accepted: {report}")
    assert resumed < 10.0
    assert [code for code, _, _ in outputs] == [0]
    assert report["lost"] == 0
    assert report["left_picked"] == report["left_queued"] == 0
    if mode == "fast":
        assert report["duplicates"] == 0
    else:
        # A crash may lose the last claims, which commit asynchronously (docs/reliability.md):
        # their jobs run again, at the same attempt, in the same process; nothing else may.
        assert report["duplicates"] == report["repeated_attempts"]


def test_a_killed_listener_comes_back_and_missed_jobs_are_polled(fdsn: str, fschema: str) -> None:
    qm = QueueManager(PsycopgDriver(fdsn), settings=Settings(schema=fschema))
    seen: list[bytes] = []
    ran = threading.Condition()

    @qm.entrypoint("ledger")
    def handler(job: Job) -> None:
        with ran:
            seen.append(job.payload or b"")
            ran.notify_all()
            if job.payload == b"2":
                # Held until job 3 has run: the worker is never idle meanwhile, so only a
                # NOTIFY can bring job 3 (an idle worker looks once more).
                ran.wait_for(lambda: b"3" in seen, 20)

    def wait_for(payload: bytes) -> bool:
        with ran:
            return ran.wait_for(lambda: payload in seen, 20)

    # Idle polls, heartbeats and the listener's deafness check far away: only the listener
    # (or its poll after reconnecting) can wake the worker.
    runner = Runner(qm, dequeue_timeout=3600, retry_timer=None, heartbeat_interval=60).start()
    # The producer keeps one connection open: it enqueues while new connections are refused.
    # (A database's connections can only be switched off from another database.)
    admin = psycopg.connect(fdsn.replace("dbname=postgres", "dbname=template1"), autocommit=True)
    producer_conn = psycopg.connect(fdsn, autocommit=True)
    producer = Queries(PsycopgDriver(producer_conn), Settings(schema=fschema))
    try:
        producer.enqueue("ledger", b"1")
        assert wait_for(b"1")
        # The listener cannot come back until job 2's NOTIFY is gone for good.
        admin.execute("ALTER DATABASE postgres WITH ALLOW_CONNECTIONS false")
        try:
            assert terminate(admin, "pgqueue-sync:listen:%") == 1
            assert eventually(lambda: backends(admin, "pgqueue-sync:listen:%") == 0)
            producer.enqueue("ledger", b"2")  # its NOTIFY is lost: no one listens
        finally:
            admin.execute("ALTER DATABASE postgres WITH ALLOW_CONNECTIONS true")
        assert wait_for(b"2"), "the job missed while the listener was away was not polled"
        assert eventually(lambda: listening(admin, fschema)), "no LISTEN after reconnecting"
        # The poll is over (job 2 runs, held until job 3 has run): only a NOTIFY is left to
        # bring job 3.
        assert eventually(lambda: fetcher_asleep(admin, fschema))
        producer.enqueue("ledger", b"3")
        assert wait_for(b"3"), "the listener did not LISTEN again after reconnecting"
    finally:
        runner.stop()
        qm.driver.close()
        admin.close()
        producer_conn.close()


def test_a_black_holed_link_is_detected_and_replaced(
    cluster: PrivateCluster, fdsn: str, fschema: str
) -> None:
    proxy = Proxy(cluster.port)
    via_proxy = cluster.dsn().replace(f"port={cluster.port}", f"port={proxy.port}")
    qm = QueueManager(PsycopgDriver(via_proxy, stall_timeout=2), settings=Settings(schema=fschema))
    done = threading.Semaphore(0)

    @qm.entrypoint("ledger")
    def handler(job: Job) -> None:
        done.release()

    producer_conn = psycopg.connect(fdsn, autocommit=True)
    producer = Queries(PsycopgDriver(producer_conn), Settings(schema=fschema))
    # Idle polls and rescues far away: only the listener noticing that it went deaf, and
    # its poll after listening anew, can bring the jobs enqueued after the cut.
    runner = Runner(qm, dequeue_timeout=3600, retry_timer=3600, heartbeat_interval=0.5).start()
    try:
        [first] = producer.enqueue("ledger", None)
        assert done.acquire(timeout=30)
        # Idle and asleep once the outcome is written: no claim in flight that would find
        # the next jobs after its stall.
        assert eventually(lambda: bool(producer.history(job_ids=[first])))
        written = producer.history(job_ids=[first])[0].created
        assert eventually(lambda: fetcher_asleep(producer_conn, fschema, since=written))
        assert proxy.blackhole() >= 3  # listen, fetch, complete: silently dead
        producer.enqueue(["ledger"] * 5, [None] * 5)
        for _ in range(5):
            assert done.acquire(timeout=30), "jobs were not processed after the link died"
    finally:
        runner.stop()
        qm.driver.close()
        producer_conn.close()
        proxy.close()


def test_a_wrong_password_is_a_clear_error_without_the_password(cluster: PrivateCluster) -> None:
    driver = PsycopgDriver(cluster.dsn(password="not-the-password"), connect_timeout=3)
    with pytest.raises(ConnectError, match="password authentication failed") as info:
        Queries(driver, Settings(schema="anything")).verify()
    assert "not-the-password" not in str(info.value)
