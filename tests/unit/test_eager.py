"""Eager mode: enqueue runs the handler inline, with no PostgreSQL at all.

Every manager here points at a closed local port: a test that reached the database would
fail with a ConnectError.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import anyio
import pytest

from pgqueue_sync import (
    InvalidStateError,
    InvalidTaskArgumentsError,
    Job,
    JobNotFoundError,
    JobStatus,
    PsycopgDriver,
    QueueManager,
    RetryPolicy,
    Task,
    UnknownEntrypointError,
    WaitTimeoutError,
)
from pgqueue_sync.testing import eager
from pgqueue_sync_aio import AsyncQueueManager

NOWHERE = "host=127.0.0.1 port=1 dbname=never_used connect_timeout=1"


def make_app() -> tuple[QueueManager, Task[..., str], list[str]]:
    qm = QueueManager(PsycopgDriver(NOWHERE))
    sent: list[str] = []

    @qm.task(name="send_email")
    def send_email(to: str, *, subject: str = "hi") -> str:
        if "@" not in to:
            raise ValueError(f"not an address: {to}")
        sent.append(to)
        return f"sent to {to}"

    @qm.entrypoint("raw")
    def raw(job: Job) -> bytes:
        return (job.payload or b"").upper()

    return qm, send_email, sent


def test_enqueue_runs_the_handler_at_once_in_this_thread() -> None:
    qm, _, sent = make_app()
    here = threading.get_ident()
    with eager(qm) as jobs:

        @qm.task(name="where")
        def task() -> int:
            return threading.get_ident()

        first = qm.queries.enqueue("raw", b"abc")
        assert len(jobs.outcomes) == 1  # ran before enqueue returned
        from_task = task.enqueue()
    assert [(o.job.entrypoint, o.status) for o in jobs.outcomes] == [
        ("raw", JobStatus.SUCCESSFUL),
        ("where", JobStatus.SUCCESSFUL),
    ]
    assert jobs.outcomes[0].result == b"ABC"
    assert jobs.outcomes[1].value == here
    assert (first, [from_task]) == ([1], [2])
    assert sent == []


def test_tasks_run_with_their_arguments_and_wait_for_gives_the_result() -> None:
    qm, send_email, sent = make_app()
    with eager(qm) as jobs:
        job_id = send_email.enqueue("a@b.c", subject="yo", priority=3)
        [result] = qm.queries.wait_for([job_id])
    assert result.value == "sent to a@b.c"
    assert sent == ["a@b.c"]
    assert jobs.outcomes[0].job.priority == 3


def test_what_enqueue_refuses_is_refused_in_eager_mode_too() -> None:
    qm, _, _ = make_app()

    @qm.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    with eager(qm) as jobs:
        with pytest.raises(InvalidTaskArgumentsError, match="missing a required argument"):
            add.enqueue(1)
        with pytest.raises(InvalidTaskArgumentsError, match="is a bytes"):
            add.enqueue(1, b"2")
        with pytest.raises(UnknownEntrypointError):
            qm.queries.enqueue("nobody", b"")
    assert jobs.outcomes == []


def test_errors_are_reported_or_raised_by_enqueue() -> None:
    qm, _, _ = make_app()

    @qm.task(name="fail", retry=RetryPolicy())
    def fail() -> None:
        raise ValueError("boom")

    with eager(qm) as jobs:
        job_id = fail.enqueue()
        with pytest.raises(WaitTimeoutError, match="would be retried"):
            qm.queries.wait_for([job_id])
    [outcome] = jobs.outcomes
    assert (outcome.status, outcome.ok, type(outcome.error)) == (
        JobStatus.QUEUED,
        False,
        ValueError,
    )
    assert outcome.retry_in is not None
    with eager(qm, raise_errors=True), pytest.raises(ValueError, match="boom"):
        fail.enqueue()


def test_the_rest_of_the_queue_is_not_there_and_says_so() -> None:
    qm, _, _ = make_app()
    real_queries = qm.queries
    with eager(qm):
        with pytest.raises(InvalidStateError, match="eager mode"):
            qm.queries.queue_size()
        with pytest.raises(InvalidStateError, match="eager mode"):
            qm.queries.history()
        with pytest.raises(JobNotFoundError):
            qm.queries.wait_for([1])
        # Deferred jobs and rolled-back transactions: not emulated, the job runs now.
        qm.queries.enqueue("raw", b"x", execute_after=timedelta(days=1))
    assert qm.queries is real_queries


def test_async_tasks_run_on_the_callers_loop() -> None:
    qm = AsyncQueueManager(PsycopgDriver(NOWHERE))
    seen: list[int] = []

    @qm.task(name="double")
    async def double(n: int) -> int:
        seen.append(threading.get_ident())
        await anyio.sleep(0)
        return n * 2

    async def main() -> None:
        with eager(qm) as jobs:
            job_id = await double.enqueue(21)
            [result] = await qm.queries.wait_for([job_id])
        assert result.value == 42
        assert jobs.outcomes[0].value == 42

    anyio.run(main)
    assert seen == [threading.get_ident()]


def test_a_flask_task_with_a_session_runs_eagerly_without_touching_a_database() -> None:
    from flask import Flask, g  # noqa: PLC0415 - the flask extra
    from flask_sqlalchemy import SQLAlchemy  # noqa: PLC0415

    from pgqueue_sync.contrib.flask import PgQueue  # noqa: PLC0415

    db = SQLAlchemy()
    pgq = PgQueue(session=db.session)

    @pgq.task(name="greet")
    def greet(name: str) -> list[str]:
        g.seen = name  # in an app context
        return [name, "greeted"]

    app = Flask("eager_app")
    app.config["SQLALCHEMY_DATABASE_URI"] = "postgresql+psycopg://nobody@127.0.0.1:1/none"
    app.config["PGQUEUE_DSN"] = NOWHERE
    db.init_app(app)
    pgq.init_app(app)
    try:
        with app.app_context(), eager(pgq.manager(), raise_errors=True) as jobs:
            greet.enqueue("ann")
        assert [o.value for o in jobs.outcomes] == [["ann", "greeted"]]
    finally:
        pgq.close(app)
        with app.app_context():
            db.engine.dispose()
