"""The Flask extension: a view enqueues a task in a Flask-SQLAlchemy transaction, a rollback
leaves nothing, ``flask pgq worker --mode drain`` runs it in an app context, and the
``flask pgq`` commands work on the app's queue. The app is examples/flask_app.py."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import psycopg
import pytest
from flask import Flask
from psycopg.conninfo import conninfo_to_dict
from sqlalchemy import create_engine
from sqlalchemy.engine import URL
from sqlalchemy.orm import Session

from pgqueue_sync import ConfigurationError, InvalidStateError, JobStatus
from pgqueue_sync.contrib.flask import PgQueue, session_connection

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "flask_app.py"


def sqlalchemy_url(dsn: str) -> str:
    """The test database as a Flask-SQLAlchemy URL on psycopg 3."""
    params = {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
    url = URL.create(
        "postgresql+psycopg",
        username=params.get("user"),
        password=params.get("password"),
        host=params.get("host"),
        port=int(params["port"]) if "port" in params else None,
        database=params.get("dbname"),
    )
    return url.render_as_string(hide_password=False)


def app_config(dsn: str, schema: str) -> dict[str, Any]:
    """The example's config for a test: its tables and the queue in the test's schema."""
    return {
        "SQLALCHEMY_DATABASE_URI": sqlalchemy_url(dsn),
        "SQLALCHEMY_ENGINE_OPTIONS": {"connect_args": {"options": f"-c search_path={schema}"}},
        "PGQUEUE_DSN": dsn,
        "PGQUEUE_SCHEMA": schema,
        "PGQUEUE_RUN_OPTIONS": {"workers": 1, "dequeue_timeout": 5},
    }


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("example_flask_app", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # SQLAlchemy resolves the models' annotations there
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def example(
    dsn: str, schema: str, conn: psycopg.Connection[Any]
) -> Iterator[tuple[ModuleType, Flask]]:
    conn.execute(f'CREATE SCHEMA "{schema}"')
    module = load_example()
    app = module.create_app(app_config(dsn, schema))
    result = app.test_cli_runner().invoke(args=["pgq", "install"])
    assert result.exit_code == 0, result.output
    assert f"installed in schema '{schema}'" in result.output
    try:
        yield module, app
    finally:
        with app.app_context():
            module.db.engine.dispose()
        module.pgq.close(app)


def jobs_in(conn: psycopg.Connection[Any], schema: str) -> list[tuple[str, Any]]:
    rows = conn.execute(
        f'SELECT entrypoint, payload FROM "{schema}".pgqueue_jobs ORDER BY id'
    ).fetchall()
    return [(entrypoint, json.loads(bytes(payload))) for entrypoint, payload in rows]


def test_a_job_enqueued_in_a_view_commits_or_rolls_back_with_the_session(
    example: tuple[ModuleType, Flask], conn: psycopg.Connection[Any], schema: str
) -> None:
    module, app = example
    client = app.test_client()
    created = client.post("/users", json={"email": "a@example.com"})
    assert created.status_code == 201
    refused = client.post("/users", json={"email": "b@invalid"})
    assert refused.status_code == 400
    user_id = created.get_json()["user"]
    # Only the committed request left a user and a job.
    assert conn.execute(f'SELECT id, email FROM "{schema}".users').fetchall() == [
        (user_id, "a@example.com")
    ]
    assert jobs_in(conn, schema) == [("send_welcome", {"args": [user_id], "kwargs": {}})]
    # Until the session commits, the job is invisible to everyone else (and to workers).
    with app.app_context():
        module.send_welcome.enqueue(12345)
        assert len(jobs_in(conn, schema)) == 1
        module.db.session.commit()
    assert len(jobs_in(conn, schema)) == 2


def test_flask_pgq_worker_runs_the_jobs_in_a_fresh_app_context_each(
    example: tuple[ModuleType, Flask], dsn: str, schema: str, conn: psycopg.Connection[Any]
) -> None:
    module, app = example
    client = app.test_client()
    ids = [
        client.post("/users", json={"email": f"{name}@example.com"}).get_json()
        for name in ("ann", "bob")
    ]
    env = {
        **os.environ,
        "FLASK_APP": str(EXAMPLE),
        **{f"FLASK_{key}": json.dumps(value) for key, value in app_config(dsn, schema).items()},
    }
    worker = subprocess.run(
        [sys.executable, "-m", "flask", "pgq", "worker", "--mode", "drain", "--workers", "1"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert worker.returncode == 0, worker.stderr
    with app.app_context():
        results = module.pgq.queries.wait_for([i["job"] for i in ids], timeout=10)
    assert [r.status for r in results] == [JobStatus.SUCCESSFUL] * 2
    # Both ran in the same handler thread, each with an empty g: a fresh app context per job.
    assert [r.value for r in results] == [
        {"sent": True, "to": "ann@example.com", "fresh_g": True},
        {"sent": True, "to": "bob@example.com", "fresh_g": True},
    ]
    welcomed = conn.execute(f'SELECT welcomed_by FROM "{schema}".users ORDER BY id').fetchall()
    assert welcomed == [("flask_app",), ("flask_app",)]


def test_the_pgq_sync_commands_work_on_the_apps_queue(
    example: tuple[ModuleType, Flask],
) -> None:
    _, app = example
    app.test_client().post("/users", json={"email": "c@example.com"})
    runner = app.test_cli_runner()
    status = runner.invoke(args=["pgq", "status", "--json"])
    assert status.exit_code == 0, status.output
    [row] = json.loads(status.output)
    assert (row["entrypoint"], row["queued"]) == ("send_welcome", 1)
    assert runner.invoke(args=["pgq", "verify"]).exit_code == 0
    # Where the queue is comes from the app's config, not from options.
    refused = runner.invoke(args=["pgq", "status", "--dsn", "host=elsewhere"])
    assert refused.exit_code == 2
    assert "No such option '--dsn'" in refused.output
    listed = runner.invoke(args=["pgq", "--help"]).output
    assert "worker" in listed
    assert "demo" not in listed


def test_configuration_is_checked_when_the_app_is_initialised() -> None:
    app = Flask("bad")
    app.config["PGQUEUE_RUN_OPTIONS"] = {"workers": 2, "wokers": 3}
    with pytest.raises(ConfigurationError, match="wokers not a parameter of run"):
        PgQueue(app)
    app = Flask("worse")
    app.config["PGQUEUE_RUN_OPTIONS"] = {"batch_size": 0}
    with pytest.raises(ConfigurationError, match="batch_size"):
        PgQueue(app)


def test_the_queue_of_which_app_needs_an_app_context_once_there_are_two() -> None:
    pgq = PgQueue()

    @pgq.task
    def noop() -> None: ...

    first, second = Flask("first"), Flask("second")
    pgq.init_app(first)
    pgq.init_app(second)
    try:
        with pytest.raises(InvalidStateError, match="no app context"):
            noop.enqueue()
        with first.app_context():
            assert pgq.manager() is pgq.manager(first)
            assert pgq.manager() is not pgq.manager(second)
            assert "noop" in pgq.manager().entrypoints
    finally:
        pgq.close(first)
        pgq.close(second)


def test_a_session_on_another_driver_is_refused_with_what_to_do() -> None:
    engine = create_engine("sqlite://")
    try:
        with Session(engine) as session, pytest.raises(ConfigurationError, match="psycopg 3"):
            session_connection(session)
    finally:
        engine.dispose()
