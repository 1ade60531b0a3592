"""Worker processes killed (SIGKILL) or frozen (SIGSTOP): nothing lost, one outcome each."""

from __future__ import annotations

import os
import random
import signal
import time
from collections.abc import Callable

import psycopg

from pgqueue_sync import PsycopgDriver, Queries, Settings
from tests.conftest import eventually
from tests.faults.conftest import Ledger, Workers


def enqueue(dsn: str, schema: str, n: int) -> list[int]:
    queries = Queries(PsycopgDriver(dsn), Settings(schema=schema))
    try:
        return queries.enqueue(["ledger"] * n, [None] * n)
    finally:
        queries.driver.close()


def test_sigkilled_workers_lose_nothing(
    fdsn: str, fschema: str, workers: Callable[..., Workers], ledger: Ledger
) -> None:
    n = 3000
    enqueue(fdsn, fschema, n)
    pool = workers(threads=2, work_ms=10, retry_timer=2)
    for _ in range(3):
        pool.start()
    kills = 0
    deadline = time.monotonic() + 240
    rng = random.Random(7)

    def passed(share: float) -> Callable[[], bool]:
        return lambda: ledger.count() >= n * share

    # The fault schedule follows progress, not the clock (a fast machine would finish
    # between kills): a worker is killed as the ledger passes 15, 35, 55 and 75 % of the jobs.
    for share in (0.15, 0.35, 0.55, 0.75, 1.0):  # the last: every job done
        reached = eventually(passed(share), deadline - time.monotonic())
        assert reached, ledger.report(n, pool.killed)
        if share == 1.0 or ledger.count() >= n:
            break
        pool.kill(rng.choice(pool.alive()))
        kills += 1
        pool.start()
    results = pool.stop_all()
    report = ledger.report(n, pool.killed)
    print(f"\n{kills} workers SIGKILLed: {report}")
    assert [code for code, _, _ in results] == [0] * len(results)  # SIGTERM: a clean exit
    assert kills >= 3
    assert report["lost"] == 0
    assert report["successful"] == n
    assert report["left_picked"] == report["left_queued"] == 0
    assert report["unexplained_duplicates"] == 0


def test_a_frozen_worker_cannot_overwrite_the_outcome_of_the_worker_that_reran_its_job(
    fdsn: str, fschema: str, workers: Callable[..., Workers], ledger: Ledger
) -> None:
    [job_id] = enqueue(fdsn, fschema, 1)
    pool = workers(threads=1, work_ms=2000, retry_timer=2)

    def runs() -> list[tuple[int, int]]:
        rows = ledger._query("SELECT attempt, pid FROM {s}.ledger ORDER BY attempt")
        return [(int(str(a)), int(str(p))) for a, p in rows]

    frozen = pool.start()
    assert eventually(lambda: runs() == [(1, frozen.pid)], 30)
    os.kill(frozen.pid, signal.SIGSTOP)
    # Re-picks the job once the frozen worker's heartbeat is retry_timer old, and is still
    # running it when the frozen worker resumes.
    rescuer = pool.start(work_ms=6000)
    assert eventually(lambda: (2, rescuer.pid) in runs(), 60)
    os.kill(frozen.pid, signal.SIGCONT)
    # The frozen worker's run ends and its outcome is written, late, while the rescuer holds
    # the job at attempt 2: fenced out. Stopped now, it exits once that write is done.
    frozen.send_signal(signal.SIGTERM)
    _, err = frozen.communicate(timeout=60)
    pool.procs.remove(frozen)
    with psycopg.connect(fdsn) as conn:
        row = conn.execute(
            f'SELECT status::text, attempts, worker_id IS NOT NULL FROM "{fschema}".pgqueue_jobs '
            "WHERE id = %s",
            (job_id,),
        ).fetchone()
        assert row == ("picked", 2, True), "the late outcome changed the rescuer's job"
    assert frozen.returncode == 0
    assert "outcome discarded" in err
    assert eventually(lambda: ledger.count() == 1, 60)
    outputs = pool.stop_all()
    assert [code for code, _, _ in outputs] == [0]
    with psycopg.connect(fdsn) as conn:
        rows = conn.execute(
            f'SELECT status::text, attempts FROM "{fschema}".pgqueue_log WHERE job_id = %s',
            (job_id,),
        ).fetchall()
    assert rows == [("successful", 2)]  # exactly one terminal outcome: the second run's
    report = ledger.report(1, {frozen.pid})
    assert report["duplicates"] == 1
    assert report["unexplained_duplicates"] == 0
