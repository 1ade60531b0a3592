"""``pgq-sync demo`` only ever touches a schema it created itself, and always drops it."""

from __future__ import annotations

import re
import shlex
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgqueue_sync import JobStatus, PsycopgDriver, Queries, Settings

PGQ_SYNC = str(Path(sys.executable).with_name("pgq-sync"))
INSTALLED = re.compile(r"queue installed in .*, schema '(\w+)'")


def demo(dsn: str, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [PGQ_SYNC, "demo", "--dsn", dsn, *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def schema_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
    assert row is not None
    return bool(row[0])


def queued(queries: Queries) -> list[tuple[str, JobStatus, int]]:
    return [(s.entrypoint, s.status, s.count) for s in queries.queue_size()]


def test_the_demo_refuses_a_schema_that_holds_a_queue(
    dsn: str, schema: str, driver: PsycopgDriver
) -> None:
    prod = Queries(driver, Settings(schema=schema))
    prod.install()
    prod.enqueue(["billing"] * 3, [b"1", b"2", b"3"])
    proc = demo(dsn, "--schema", schema, "--jobs", "50")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert f"schema {schema!r} already exists" in proc.stderr
    assert "demo" not in proc.stdout  # nothing ran
    assert queued(prod) == [("billing", JobStatus.QUEUED, 3)]
    assert prod.verify() >= 1


@pytest.fixture
def public_queue(driver: PsycopgDriver) -> Iterator[Queries]:
    # A queue of this test's own in schema public, told apart by its prefix.
    queries = Queries(driver, Settings(schema="public", prefix=f"t{uuid.uuid4().hex[:8]}_"))
    queries.install()
    yield queries
    queries.uninstall()


def test_the_demo_refuses_public_and_leaves_its_queue_alone(
    dsn: str, public_queue: Queries
) -> None:
    public_queue.enqueue(["billing"] * 3, [None] * 3)
    prefix = public_queue.settings.prefix
    proc = demo(dsn, "--schema", "public", "--prefix", prefix, "--jobs", "50")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "schema 'public' already exists" in proc.stderr
    assert queued(public_queue) == [("billing", JobStatus.QUEUED, 3)]


def test_without_schema_each_demo_runs_in_a_fresh_schema_and_drops_it(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    # What a demo killed before it could clean up leaves behind: a schema of the old fixed
    # name, with jobs in it. It blocks nothing, and nothing touches it.
    leftover = f"pgqueue_demo_{uuid.uuid4().hex[:8]}"
    left = Queries(PsycopgDriver(conn), Settings(schema=leftover))
    left.install()
    left.enqueue(["demo.checksum"] * 2, [b"0", b"1"])
    try:
        names = []
        for _ in range(2):
            proc = demo(dsn, "--jobs", "200")
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "demo OK" in proc.stdout
            match = INSTALLED.search(proc.stdout)
            assert match is not None, proc.stdout
            names.append(match.group(1))
            assert not schema_exists(conn, match.group(1))
        assert names[0] != names[1]
        assert all(name.startswith("pgqueue_demo_") for name in names)
        assert queued(left) == [("demo.checksum", JobStatus.QUEUED, 2)]
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{leftover}" CASCADE')


def test_the_demo_keeps_its_schema_only_when_asked(dsn: str, conn: psycopg.Connection[Any]) -> None:
    name = f"t_demo_{uuid.uuid4().hex[:8]}"
    try:
        proc = demo(dsn, "--schema", name, "--jobs", "100", "--keep")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert f"kept schema {name!r}" in proc.stdout
        assert schema_exists(conn, name)
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


def slow_demo(dsn: str, jobs: int) -> tuple[str, ...]:
    """Arguments of a demo that runs for many seconds: one job per claim, one thread."""
    return (PGQ_SYNC, "demo", "--dsn", dsn, "--jobs", str(jobs), "--workers", "1")


def test_ctrl_c_stops_the_demo_says_so_exits_130_and_drops_its_schema(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    proc = subprocess.Popen(
        [*slow_demo(dsn, 200_000), "--batch-size", "1"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        name = None
        for line in proc.stdout:  # the progress lines show it is running
            match = INSTALLED.search(line)
            name = match.group(1) if match else name
            if "running:" in line:
                break
        assert name is not None
        assert schema_exists(conn, name)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, out + err
    assert "interrupted" in err
    assert "FAILED" not in out + err
    assert "Traceback" not in err
    assert not schema_exists(conn, name)


def test_piped_into_head_the_demo_stops_quietly_and_drops_its_schema(
    dsn: str, conn: psycopg.Connection[Any], tmp_path: Path
) -> None:
    command = " ".join(shlex.quote(a) for a in slow_demo(dsn, 100_000)) + " --batch-size 1"
    errors = tmp_path / "demo.err"
    proc = subprocess.run(
        [
            "bash",
            "-c",
            f'{command} 2>{shlex.quote(str(errors))} | head -2; echo "${{PIPESTATUS[0]}}"',
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    lines = proc.stdout.splitlines()
    assert len(lines) == 3, proc.stdout + proc.stderr
    match = INSTALLED.search(lines[0])
    assert match is not None, proc.stdout
    assert lines[1].startswith("enqueued 100000 jobs")
    assert lines[2] == "1"  # the demo's exit code: it did not finish
    assert errors.read_text() == ""  # quietly: no traceback, no "Exception ignored"
    assert not schema_exists(conn, match.group(1))


def test_sigterm_before_the_jobs_run_still_drops_the_schema(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    proc = subprocess.Popen(
        [*slow_demo(dsn, 1_000_000)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert proc.stdout is not None
        match = INSTALLED.search(proc.stdout.readline())
        assert match is not None
        proc.send_signal(signal.SIGTERM)  # while a million jobs are being enqueued
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 128 + signal.SIGTERM, out + err
    assert "demo interrupted (SIGTERM)" in err
    assert "Traceback" not in err
    assert not schema_exists(conn, match.group(1))
