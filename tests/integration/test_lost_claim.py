"""A claim the server forgets in a crash (claims commit asynchronously) runs its job once."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import psycopg

from pgqueue_sync import Job, JobStatus, QueueManager, Settings
from tests.conftest import Runner, eventually

Start = Callable[..., Runner]


def test_a_job_whose_claim_was_lost_and_made_again_runs_once(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings, runner: Start
) -> None:
    entered = threading.Semaphore(0)
    gate = threading.Event()
    runs = 0

    @qm.entrypoint("once")
    def once(job: Job) -> None:
        nonlocal runs
        runs += 1
        entered.release()
        gate.wait(30)

    [job_id] = qm.queries.enqueue("once", None)
    r = runner(qm, workers=2)
    assert entered.acquire(timeout=20)
    # What the table holds after a crash lost the claim: the job queued again, at the attempt
    # before the claim. The worker, still running it, claims it again at the same attempt.
    table = settings.ident("jobs").as_string(None)
    conn.execute(
        f"UPDATE {table} SET status = 'queued', attempts = attempts - 1, worker_id = NULL"
        " WHERE id = %s",
        (job_id,),
    )
    qm.queries.notify('{"type": "insert"}')

    def picked_again() -> bool:
        row = conn.execute(f"SELECT status::text FROM {table} WHERE id = %s", (job_id,)).fetchone()
        return row is not None and row[0] == "picked"

    assert eventually(picked_again)
    gate.set()
    [result] = qm.queries.wait_for([job_id], timeout=20)
    r.stop()
    assert result.status is JobStatus.SUCCESSFUL
    assert runs == 1
    assert [e.attempts for e in qm.queries.history(job_ids=[job_id])] == [1]
