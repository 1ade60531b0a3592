"""Fault-injection fixtures: a private PostgreSQL cluster, worker processes, a ledger."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import psycopg
import pytest

from pgqueue_sync import PsycopgDriver, Queries, Settings
from tests.faults.cluster import PrivateCluster
from tests.faults.worker_proc import LEDGER_DDL

ROOT = Path(__file__).resolve().parents[2]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/faults/" in str(item.fspath).replace(os.sep, "/"):
            item.add_marker(pytest.mark.faults)


@pytest.fixture(scope="session")
def cluster() -> Iterator[PrivateCluster]:
    with tempfile.TemporaryDirectory(prefix="pgqueue-faults-") as root:
        pg = PrivateCluster(Path(root))
        pg.init()
        pg.start()
        try:
            yield pg
        finally:
            pg.stop("immediate")


@pytest.fixture
def fdsn(cluster: PrivateCluster) -> str:
    """A DSN of the private cluster (the server may be restarted under it)."""
    return cluster.dsn()


@pytest.fixture
def fschema(fdsn: str) -> Iterator[str]:
    name = f"f_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(fdsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
        conn.execute(LEDGER_DDL.format(schema=f'"{name}"'))
    queries = Queries(PsycopgDriver(fdsn), Settings(schema=name))
    queries.install()
    queries.driver.close()
    yield name
    with psycopg.connect(fdsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


class Workers:
    """Worker processes of tests/faults/worker_proc.py."""

    def __init__(self, dsn: str, schema: str, **options: object) -> None:
        self.dsn = dsn
        self.schema = schema
        self.options = options
        self.procs: list[subprocess.Popen[str]] = []
        self.killed: set[int] = set()

    def start(self, **overrides: object) -> subprocess.Popen[str]:
        options = {**self.options, **overrides}
        args = [sys.executable, "-m", "tests.faults.worker_proc", self.dsn, self.schema]
        for key, value in options.items():
            args += [f"--{key.replace('_', '-')}", str(value)]
        proc = subprocess.Popen(
            args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready"
        self.procs.append(proc)
        return proc

    def alive(self) -> list[subprocess.Popen[str]]:
        return [p for p in self.procs if p.poll() is None]

    def kill(self, proc: subprocess.Popen[str], sig: int = signal.SIGKILL) -> None:
        self.killed.add(proc.pid)
        proc.send_signal(sig)
        proc.wait(30)

    def stop_all(self, timeout: float = 60) -> list[tuple[int, str, str]]:
        """SIGTERM every live worker; return (exit code, stdout, stderr) of each."""
        results = []
        for proc in self.alive():
            proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            if proc.pid in self.killed:
                proc.communicate(timeout=5)
                continue
            out, err = proc.communicate(timeout=timeout)
            results.append((proc.returncode, out, err))
        return results

    def force_stop(self) -> None:
        for proc in self.alive():
            proc.kill()
            proc.wait(10)


@pytest.fixture
def workers(fdsn: str, fschema: str) -> Iterator[Callable[..., Workers]]:
    made: list[Workers] = []

    def make(**options: object) -> Workers:
        w = Workers(fdsn, fschema, **options)
        made.append(w)
        return w

    yield make
    for w in made:
        w.force_stop()
        for proc in w.procs:
            for stream in (proc.stdout, proc.stderr):
                if stream is not None:
                    stream.close()


class Ledger:
    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.schema = schema

    def _query(self, sql: str) -> list[tuple[object, ...]]:
        with psycopg.connect(self.dsn, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(sql.format(s=f'"{self.schema}"')).fetchall()

    def count(self) -> int:
        """Jobs finished (in the log); robust to the server restarting under it."""
        for _ in range(100):
            try:
                return int(str(self._query("SELECT count(*) FROM {s}.pgqueue_log")[0][0]))
            except psycopg.OperationalError:
                time.sleep(0.1)
        raise RuntimeError("the private cluster does not answer")

    def report(self, expected: int, killed: set[int]) -> dict[str, int]:
        rows = self._query("SELECT job_id, attempt, pid FROM {s}.ledger ORDER BY job_id, attempt")
        runs: dict[int, list[tuple[int, int]]] = {}
        for job_id, attempt, pid in rows:
            runs.setdefault(int(str(job_id)), []).append((int(str(attempt)), int(str(pid))))
        log = self._query("SELECT job_id, status::text FROM {s}.pgqueue_log")
        left = self._query("SELECT status::text, count(*) FROM {s}.pgqueue_jobs GROUP BY 1")
        # Every run but the last of a job must come from a worker that was killed or frozen.
        unexplained = sum(
            1 for attempts in runs.values() for _, pid in attempts[:-1] if pid not in killed
        )
        return {
            "expected": expected,
            "ran": len(runs),
            "lost": expected - len({job_id for job_id, _ in log}),
            "duplicates": len(rows) - len(runs),
            "unexplained_duplicates": unexplained,
            # The same attempt run twice by the same process: its claim was lost in a server
            # crash (claims commit asynchronously) and made again after the restart.
            "repeated_attempts": len(rows) - len({tuple(r) for r in rows}),
            "logged": len(log),
            "successful": sum(1 for _, status in log if status == "successful"),
            "left_picked": sum(int(str(n)) for status, n in left if status == "picked"),
            "left_queued": sum(int(str(n)) for status, n in left if status == "queued"),
        }


@pytest.fixture
def ledger(fdsn: str, fschema: str) -> Ledger:
    return Ledger(fdsn, fschema)
