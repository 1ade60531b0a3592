"""The examples run as written, against a fresh schema."""

from __future__ import annotations

import importlib.util
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest
from psycopg.conninfo import conninfo_to_dict

from pgqueue_sync import JobStatus, PsycopgDriver, Queries, Settings

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
LIBPQ_ENV = {
    "host": "PGHOST",
    "port": "PGPORT",
    "user": "PGUSER",
    "dbname": "PGDATABASE",
    "password": "PGPASSWORD",
}


def libpq_env(dsn: str, schema: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "PGQUEUE_"))}
    for key, value in conninfo_to_dict(dsn).items():
        if key in LIBPQ_ENV and value is not None:
            env[LIBPQ_ENV[key]] = str(value)
    env["PGQUEUE_SCHEMA"] = schema
    return env


def test_reference_example_runs_as_written(dsn: str, schema: str, driver: PsycopgDriver) -> None:
    q = Queries(driver, Settings(schema=schema))
    q.install()
    proc = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / "reference.py")],
        env=libpq_env(dsn, schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    processed = 0
    for line in proc.stdout:
        # Handler threads print concurrently: two messages can share a line.
        processed += line.count("Processed message: Job(")
        if processed >= 1000:
            break
    proc.send_signal(signal.SIGINT)  # the user's stop condition
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    assert processed + out.count("Processed message:") == 1000
    log = q.log(limit=2000)
    assert len(log) == len({e.job_id for e in log}) == 1000
    assert {e.status for e in log} == {JobStatus.SUCCESSFUL}


def test_producer_and_consumer_scripts(dsn: str, schema: str, driver: PsycopgDriver) -> None:
    env = libpq_env(dsn, schema)
    env["PGQUEUE_DSN"] = dsn
    produced = subprocess.run(
        [sys.executable, str(EXAMPLES / "producer.py"), "5"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert produced.returncode == 0, produced.stderr
    assert "enqueued 6 jobs" in produced.stdout
    consumed = subprocess.run(
        [sys.executable, str(EXAMPLES / "consumer.py"), "--drain"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert consumed.returncode == 0, consumed.stderr
    assert consumed.stdout.count("sending email to user") == 5
    # The report is deferred by 10 s: a drain leaves it queued for a later run.
    sizes = Queries(driver, Settings(schema=schema)).queue_size()
    assert [(s.entrypoint, s.status, s.count) for s in sizes] == [
        ("send_report", JobStatus.QUEUED, 1)
    ]


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_outbox_example_commits_order_and_job_together(
    dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGQUEUE_DSN", dsn)
    monkeypatch.setenv("PGQUEUE_SCHEMA", schema)
    app = load("outbox_flask").create_app()
    pool = app.extensions["pgqueue_pool"]
    qm = app.extensions["pgqueue"]
    try:
        client = app.test_client()
        ok = client.post("/orders", json={"item": "book"})
        assert ok.status_code == 201
        bad = client.post("/orders", json={"item": ""})
        assert bad.status_code == 400
        with pool.connection() as conn:
            rows = conn.execute(f'SELECT id, item FROM "{schema}".orders').fetchall()
        assert rows == [(ok.get_json()["order_id"], "book")]
        jobs = qm.queries.get_jobs(range(1, 100))
        assert [j.payload for j in jobs] == [str(rows[0][0]).encode()]
        qm.run(mode="drain")
        assert [e.status for e in qm.queries.history()] == [JobStatus.SUCCESSFUL]
    finally:
        pool.close()
