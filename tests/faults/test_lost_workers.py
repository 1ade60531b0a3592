"""A handler that kills its worker process: failed after max_lost losses, and only it."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import psycopg

from pgqueue_sync import JobStatus, PsycopgDriver, Queries, Settings
from tests.faults.conftest import ROOT
from tests.faults.poison_proc import RUNS_DDL

MAX_LOST = 3


class Supervisor:
    """Starts worker processes of tests/faults/poison_proc.py, one at a time."""

    def __init__(self, dsn: str, schema: str, stderr: Path) -> None:
        self.args = [sys.executable, "-m", "tests.faults.poison_proc", dsn, schema]
        self.args += ["--max-lost", str(MAX_LOST)]
        self.stderr_path = stderr
        self.stderr = stderr.open("a")
        self.procs: list[subprocess.Popen[str]] = []

    def start(self) -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            self.args, cwd=ROOT, stdout=subprocess.PIPE, stderr=self.stderr, text=True
        )
        self.procs.append(proc)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        return proc

    def log(self) -> str:
        return self.stderr_path.read_text()

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            if proc.stdout is not None:
                proc.stdout.close()
        self.stderr.close()


def test_a_job_that_kills_its_worker_fails_after_max_lost_and_spares_its_batch_mates(
    fdsn: str, fschema: str, tmp_path: Path
) -> None:
    with psycopg.connect(fdsn, autocommit=True) as conn:
        conn.execute(RUNS_DDL.format(schema=f'"{fschema}"'))
        queries = Queries(PsycopgDriver(conn), Settings(schema=fschema))
        [poison] = queries.enqueue("poison", None, priority=10)  # first in the batch
        innocents = queries.enqueue(["innocent"] * 15, [None] * 15)

        def finished() -> bool:
            logged = {e.job_id for e in queries.history(limit=100, status="successful")}
            [job] = queries.get_jobs([poison])
            return job.status is JobStatus.FAILED and logged >= set(innocents)

        def handlers_started() -> set[int]:
            """Jobs whose handler's start the engine recorded (only rescued jobs record it)."""
            return {j.id for j in queries.get_jobs([poison, *innocents]) if j.started}

        # The supervisor: restart the worker whenever it dies. Before each restart, the jobs
        # whose handler was running at the death (by the engine's record) are noted.
        supervisor = Supervisor(fdsn, fschema, tmp_path / "workers.err")
        deaths: list[tuple[int, set[int]]] = []
        try:
            proc = supervisor.start()
            deadline = time.monotonic() + 120
            while not finished():
                assert time.monotonic() < deadline, supervisor.log()
                try:
                    proc.wait(timeout=0.25)
                except subprocess.TimeoutExpired:
                    continue
                assert proc.returncode == 1, supervisor.log()  # os._exit(1) in the handler
                deaths.append((proc.pid, handlers_started()))
                proc = supervisor.start()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(30) == 0, supervisor.log()
        finally:
            supervisor.close()
        runs = conn.execute(
            f'SELECT job_id, attempt, rescued, lost, pid FROM "{fschema}".runs'
        ).fetchall()
        check(queries, poison, innocents, deaths, runs)


def check(
    queries: Queries,
    poison: int,
    innocents: list[int],
    deaths: list[tuple[int, set[int]]],
    runs: list[tuple[int, int, int, int, int]],
) -> None:
    died = {pid for pid, _ in deaths}
    # The poison job ran once per death, and was failed after MAX_LOST counted losses: its
    # first loss cannot be told from a job that was only buffered, so nothing records a
    # start before a job has been rescued once.
    assert len(deaths) == MAX_LOST + 1
    assert deaths[0][1] == set()
    assert all(poison in started for _, started in deaths[1:])
    [job] = queries.get_jobs([poison])
    message = f"its worker was lost {MAX_LOST} times while running it (max_lost={MAX_LOST})"
    assert job.last_error == f"JobLostError: {message}\n"
    assert (job.lost, job.rescued) == (MAX_LOST, MAX_LOST + 1)
    assert sorted(r[4] for r in runs if r[0] == poison) == sorted(died)
    # Every innocent job ended successful exactly once ...
    log = queries.history(limit=100, job_ids=innocents)
    assert sorted(e.job_id for e in log) == sorted(innocents)
    assert {e.status for e in log} == {JobStatus.SUCCESSFUL}
    # ... counted as lost exactly for the deaths at which its handler was running: never
    # when it only waited in the buffer (16 claimed together, 4 handler threads) ...
    for _, started in deaths:
        assert len(started) <= 4
    final = {r[0]: r for r in runs if r[4] not in died}
    assert sorted(final) == sorted(innocents)
    for job_id in innocents:
        counted = sum(1 for _, started in deaths if job_id in started)
        assert final[job_id][3] == counted, (job_id, deaths)
        # ... and every run a death cut short (after the first) was counted.
        cut = sum(1 for r in runs if r[0] == job_id and r[4] in died and r[2] > 0)
        assert cut <= counted, (job_id, runs)
    charged = sorted(j for j in innocents if final[j][3])
    print(f"\n{len(deaths)} deaths; innocents counted as lost: {charged} (at most once each)")
    assert all(final[j][3] <= 1 for j in innocents)  # counted once, then run alone
