"""``pgq-sync run``: worker processes under a supervisor, as an operator runs them.

The application is tests/tests_app.py (``tests_app:make``); its handlers write each start
in a ledger table (job, entrypoint, pid, the database's clock), which the tests read.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import IO, Any

import pytest
from psycopg import sql

from pgqueue_sync import JobStatus, Queries
from tests.conftest import eventually
from tests.tests_app import ledger_table

TESTS = Path(__file__).resolve().parents[1]
PGQ = str(Path(sys.executable).with_name("pgq-sync"))
JOB_SECONDS = 0.05


@pytest.fixture
def env(dsn: str, schema: str) -> dict[str, str]:
    return {
        **os.environ,
        "PGQUEUE_DSN": dsn,
        "PGQUEUE_SCHEMA": schema,
        "TESTS_APP_JOB_SECONDS": str(JOB_SECONDS),
    }


def pgq(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PGQ, *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def start(env: dict[str, str], log: IO[str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [PGQ, "run", "tests_app:make", *args],
        cwd=TESTS,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
    )


def ledger(queries: Queries) -> list[tuple[int, str, int, Any]]:
    with queries.driver.connection() as conn:
        table = ledger_table(queries.settings)
        return conn.execute(
            sql.SQL("SELECT job_id, entrypoint, pid, started FROM {} ORDER BY started").format(
                table
            )
        ).fetchall()


def live_pids(queries: Queries) -> set[int]:
    return {w.pid for w in queries.workers() if not w.lost}


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def test_two_processes_survive_a_kill_pause_resume_and_stop_on_sigterm(
    queries: Queries, env: dict[str, str], tmp_path: Path
) -> None:
    log_path = tmp_path / "run.log"
    with log_path.open("w") as log:
        proc = start(
            env, log, "--processes", "2", "--workers", "4", "--retry-timer", "2",
            "--dequeue-timeout", "1",
        )  # fmt: skip
        try:
            run_and_check(queries, env, proc, log_path)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    output = log_path.read_text()
    assert code == 0, output
    children = {pid for _, _, pid, _ in ledger(queries)}
    assert eventually(lambda: not any(alive(pid) for pid in children)), "a child outlived it"
    # Nothing left picked (nor queued): every job finished; the live workers are gone from
    # the registry (a clean stop removes its row), the killed one is shown lost.
    assert queries.list_jobs().jobs == []
    assert [w.lost for w in queries.workers()] == [True]
    assert "SIGTERM received: stopping 2 worker process(es) gracefully" in output
    assert "all worker processes stopped" in output


def run_and_check(
    queries: Queries, env: dict[str, str], proc: subprocess.Popen[str], log_path: Path
) -> None:
    assert eventually(lambda: len(live_pids(queries)) == 2, 30), log_path.read_text()
    listed = json.loads(pgq(env, "workers", "--json").stdout)
    assert len(listed) == 2
    assert {"id", "host", "pid", "started_at", "heartbeat_at"} <= set(listed[0])
    first_pids = sorted(w["pid"] for w in listed)
    assert [parent_of(pid) for pid in first_pids] == [proc.pid] * 2

    ids = queries.enqueue(["alpha", "beta"] * 250, [None] * 500)
    alpha, beta = ids[0::2], ids[1::2]
    assert eventually(lambda: len(ledger(queries)) >= 60, 30)
    killed = first_pids[0]
    os.kill(killed, signal.SIGKILL)

    # Pause beta: nothing of it starts for 3 s (the handlers' own ledger says so), while
    # alpha drains, the killed child's jobs included (re-picked after retry_timer).
    assert pgq(env, "pause", "beta").stdout == "paused: beta\n"
    [paused] = queries.paused()
    queries.wait_for(alpha, timeout=60)
    with queries.driver.connection() as conn:
        [(now,)] = conn.execute("SELECT now()").fetchall()
    if now < paused.since + timedelta(seconds=3):
        time.sleep((paused.since + timedelta(seconds=3) - now).total_seconds())
    grace = paused.since + timedelta(seconds=0.5)  # the NOTIFY's way to the workers
    late = [row for row in ledger(queries) if row[1] == "beta" and row[3] > grace]
    assert late == []
    waiting = [j for j in queries.get_jobs(beta) if j.status is not JobStatus.FAILED]
    assert len(waiting) > 50  # the pause held back a good part of beta

    # The killed child was replaced: two live workers, one of them new.
    assert eventually(lambda: len(live_pids(queries)) == 2, 30)
    assert live_pids(queries) - set(first_pids), "the killed child was not replaced"

    assert pgq(env, "resume", "beta").stdout == "resumed: beta\n"
    results = queries.wait_for(ids, timeout=60)
    assert {r.status for r in results} == {JobStatus.SUCCESSFUL}
    # Nothing lost; a job ran twice only if the killed child had started it.
    rows = ledger(queries)
    assert {job_id for job_id, *_ in rows} == set(ids)
    seen: dict[int, int] = {}
    for job_id, _, pid, _ in rows:
        if job_id in seen:
            assert seen[job_id] == killed, f"job {job_id} ran twice without a kill"
        seen.setdefault(job_id, pid)
    states = json.loads(pgq(env, "workers", "--json").stdout)
    assert sorted(w["lost"] for w in states) == [False, False, True]
    assert [w["pid"] for w in states if w["lost"]] == [killed]
    output = log_path.read_text()
    assert f"worker process {killed} exited (killed by SIGKILL)" in output
    assert "restarting it in 0.5 s" in output


def test_a_child_that_cannot_start_stops_the_supervisor(
    queries: Queries, env: dict[str, str], tmp_path: Path
) -> None:
    with (tmp_path / "log").open("w") as log:
        # The DSN points at a closed port: each child fails to connect.
        bad = {**env, "PGQUEUE_DSN": "host=127.0.0.1 port=1 user=x password=secret-pw"}
        proc = start(bad, log, "--processes", "2")
        assert proc.wait(60) == 1
    output = (tmp_path / "log").read_text()
    assert "could not start (exit code 1): stopping the others" in output
    assert "could not connect" in output
    assert "secret-pw" not in output
    with (tmp_path / "log2").open("w") as log:
        proc = subprocess.Popen(
            [PGQ, "run", "tests_app:nothing_here", "--processes", "2"],
            cwd=TESTS, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        assert proc.wait(60) == 2
    assert "has no attribute 'nothing_here'" in (tmp_path / "log2").read_text()


def test_max_jobs_replaces_the_process_and_loses_nothing(
    queries: Queries, env: dict[str, str], tmp_path: Path
) -> None:
    ids = queries.enqueue(["alpha"] * 100, [None] * 100)
    fast = {**env, "TESTS_APP_JOB_SECONDS": "0"}
    with (tmp_path / "log").open("w") as log:
        proc = start(fast, log, "--processes", "1", "--max-jobs", "20", "--batch-size", "5")
        try:
            results = queries.wait_for(ids, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    output = (tmp_path / "log").read_text()
    assert code == 0, output
    assert {r.status for r in results} == {JobStatus.SUCCESSFUL}
    pids = {pid for _, _, pid, _ in ledger(queries)}
    assert len(pids) >= 3, output  # 20 jobs per process, and what it held then (< 40)
    assert "ran 20 jobs (--max-jobs 20): finishing the jobs it holds" in output
    assert "finished its run (exit code 75): replacing it" in output


def test_one_process_in_drain_mode_logs_json_lines(queries: Queries, env: dict[str, str]) -> None:
    queries.enqueue(["alpha", "beta"], [None, None])
    proc = subprocess.run(
        [PGQ, "run", "tests_app:make", "--mode", "drain", "--log-format", "json"],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = [json.loads(line) for line in proc.stderr.splitlines()]
    messages = [line["message"] for line in lines]
    [started] = [m for m in messages if " started on " in m]
    assert "entrypoints alpha, beta, fails; " in started
    assert any(m.startswith("worker ") and " stopped: " in m for m in messages)
    assert {line["pid"] for line in lines} == {lines[0]["pid"]}
    assert queries.workers() == []


def test_a_failed_job_is_a_log_line_with_its_id(queries: Queries, env: dict[str, str]) -> None:
    [job_id] = queries.enqueue("fails", None)
    proc = subprocess.run(
        [PGQ, "run", "tests_app:make", "--mode", "drain"],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert f"job {job_id} (fails) raised ValueError: job {job_id} fails on purpose" in proc.stderr


def test_an_application_that_cannot_be_built_exits_1_with_its_traceback(
    queries: Queries, env: dict[str, str]
) -> None:
    proc = subprocess.run(
        [PGQ, "run", "tests/tests_app.py:make", "--mode", "drain"],
        cwd=TESTS.parent,
        env={**env, "TESTS_APP_JOB_SECONDS": "not a number"},
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "calling make() raised ValueError" in proc.stderr
    assert "Traceback" in proc.stderr


def test_an_async_application_runs_too(queries: Queries, env: dict[str, str]) -> None:
    ids = queries.enqueue(["alpha", "beta"] * 5, [None] * 10)
    proc = subprocess.run(
        [PGQ, "run", "tests_app:make_async", "--mode", "drain"],
        cwd=TESTS, env=env, capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert {job_id for job_id, *_ in ledger(queries)} == set(ids)


@pytest.mark.parametrize("supervised", [False, True], ids=["one process", "supervisor"])
def test_a_second_signal_stops_at_once(
    queries: Queries, env: dict[str, str], tmp_path: Path, supervised: bool
) -> None:
    """The first SIGINT waits for the running job (30 s); the second stops at once (130)."""
    [job_id] = queries.enqueue("alpha", None)
    extra = ["--processes", "1"] if supervised else []
    with (tmp_path / "log").open("w") as log:
        proc = start({**env, "TESTS_APP_JOB_SECONDS": "30"}, log, *extra)
        try:
            assert eventually(lambda: len(ledger(queries)) == 1, 30)
            proc.send_signal(signal.SIGINT)
            assert eventually(lambda: "stopping gracefully" in (tmp_path / "log").read_text())
            with pytest.raises(subprocess.TimeoutExpired):
                proc.wait(1)  # the job holds it
            proc.send_signal(signal.SIGINT)
            code = proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
    output = (tmp_path / "log").read_text()
    assert code == 130, output
    assert "received again" in output
    [(pid,)] = {(row[2],) for row in ledger(queries)}
    assert eventually(lambda: not alive(pid)), "the worker process outlived the hard stop"
    [job] = queries.get_jobs([job_id])
    assert job.status is JobStatus.PICKED  # it runs again after retry_timer


def test_children_stop_when_their_supervisor_is_killed(
    queries: Queries, env: dict[str, str], tmp_path: Path
) -> None:
    with (tmp_path / "log").open("w") as log:
        proc = start(env, log, "--processes", "2")
        try:
            assert eventually(lambda: len(live_pids(queries)) == 2, 30)
            pids = live_pids(queries)
            proc.kill()
            proc.wait(10)
            assert eventually(lambda: not any(alive(pid) for pid in pids), 30)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert "the supervisor is gone: stopping gracefully" in (tmp_path / "log").read_text()
    assert queries.workers() == []  # they stopped cleanly


def test_max_memory_replaces_the_process(
    queries: Queries, env: dict[str, str], tmp_path: Path
) -> None:
    ids = queries.enqueue(["alpha"] * 10, [None] * 10)
    with (tmp_path / "log").open("w") as log:
        # Every process uses more than 1 MB: each is replaced after its first jobs.
        proc = start({**env, "TESTS_APP_JOB_SECONDS": "0"}, log, "--processes", "1",
                     "--max-memory", "1", "--batch-size", "1", "--workers", "1")  # fmt: skip
        try:
            queries.wait_for(ids, timeout=60)
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(60)
    output = (tmp_path / "log").read_text()
    assert code == 0, output
    assert "(--max-memory 1): finishing the jobs it holds, then exiting to be replaced" in output
    assert len({pid for _, _, pid, _ in ledger(queries)}) >= 2
