"""The task API: ``@qm.task`` functions enqueued with JSON arguments, run by a worker."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import psycopg
import pytest
from tenacity import stop_after_attempt, wait_none

from pgqueue_sync import (
    Context,
    DuplicateJobError,
    InvalidHandlerError,
    InvalidTaskArgumentsError,
    JobStatus,
    QueueManager,
    RetryPolicy,
    Task,
    current_context,
)
from pgqueue_sync.settings import Settings


def test_a_task_runs_with_its_arguments_and_wait_for_returns_its_value(
    qm: QueueManager,
) -> None:
    @qm.task(name="send_email", timeout=30)
    def send_email(to: str, subject: str, *, urgent: bool = False) -> dict[str, Any]:
        return {"to": to, "subject": subject, "urgent": urgent}

    assert isinstance(send_email, Task)
    first = send_email.enqueue("a@b.c", "hi", urgent=True)
    second = send_email.enqueue(to="d@e.f", subject="yo")
    qm.run(mode="drain", workers=2)
    results = qm.queries.wait_for([first, second], timeout=10)
    assert [r.status for r in results] == [JobStatus.SUCCESSFUL] * 2
    assert results[0].value == {"to": "a@b.c", "subject": "hi", "urgent": True}
    assert results[1].value == {"to": "d@e.f", "subject": "yo", "urgent": False}
    # A task is an entrypoint like any other: its name, its policies, the log.
    assert qm.entrypoints["send_email"].timeout == 30
    assert {e.entrypoint for e in qm.queries.history()} == {"send_email"}
    # A plain call runs the function here and now.
    assert send_email("x", "y") == {"to": "x", "subject": "y", "urgent": False}


def test_bad_arguments_are_refused_at_enqueue_and_nothing_is_written(qm: QueueManager) -> None:
    @qm.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(InvalidTaskArgumentsError, match="missing a required argument: 'b'"):
        add.enqueue(1)
    with pytest.raises(InvalidTaskArgumentsError, match="unexpected keyword argument 'c'"):
        add.enqueue(1, 2, c=3)
    with pytest.raises(InvalidTaskArgumentsError, match="argument 'b' is a bytes"):
        add.enqueue(1, b"2")
    with pytest.raises(InvalidTaskArgumentsError, match="argument 'a' is nan"):
        add.enqueue(float("nan"), 2)
    assert qm.queries.queue_size() == []
    [job_id] = [add.enqueue(1, 2)]
    qm.run(mode="drain")
    assert qm.queries.wait_for([job_id], timeout=10)[0].value == 3


def test_the_enqueue_options_apply_to_the_job(
    qm: QueueManager, conn: psycopg.Connection[Any]
) -> None:
    @qm.task
    def report(day: str) -> str:
        return day

    assert report.name == "report"
    later = report.enqueue("mon", execute_after=timedelta(hours=1), priority=7, headers={"h": 1})
    [job] = qm.queries.get_jobs([later])
    assert (job.priority, job.headers, job.execute_after > job.created) == (7, {"h": 1}, True)
    keyed = report.enqueue("tue", dedupe_key="tue")
    with pytest.raises(DuplicateJobError):
        report.enqueue("tue", dedupe_key="tue")
    assert report.enqueue("tue", dedupe_key="tue", on_conflict="skip") == keyed
    # connection=: the job joins the caller's transaction, and goes with its rollback.
    with psycopg.connect(conn.info.dsn) as tx:
        rolled_back = report.enqueue("wed", connection=tx)
        tx.rollback()
    assert qm.queries.get_jobs([rolled_back]) == []
    qm.run(mode="drain")
    assert [e.job_id for e in qm.queries.history()] == [keyed]


def test_a_task_with_a_parameter_named_like_an_option_is_enqueued_with_enqueue_with(
    qm: QueueManager,
) -> None:
    @qm.task(name="notify")
    def notify(user: int, priority: str = "low", connection: str = "email") -> str:
        return f"{user}:{priority}:{connection}"

    with pytest.raises(InvalidTaskArgumentsError, match=r"named like an enqueue option \("):
        notify.enqueue(1, priority=3)
    job_id = notify.enqueue_with((1,), {"priority": "high"}, priority=3)
    [job] = qm.queries.get_jobs([job_id])
    assert job.priority == 3
    qm.run(mode="drain")
    assert qm.queries.wait_for([job_id], timeout=10)[0].value == "1:high:email"


def test_a_task_gets_its_context_by_annotation_or_current_context(qm: QueueManager) -> None:
    @qm.task(name="who")
    def who(label: str, ctx: Context) -> list[Any]:
        assert current_context() is ctx
        return [label, ctx.job.entrypoint, ctx.attempt]

    job_id = who.enqueue("me")
    qm.run(mode="drain")
    assert qm.queries.wait_for([job_id], timeout=10)[0].value == ["me", "who", 1]


def test_retries_results_and_failures_follow_the_entrypoint_policies(qm: QueueManager) -> None:
    calls: list[int] = []

    @qm.task(name="flaky", retry=RetryPolicy(stop=stop_after_attempt(3), wait=wait_none()))
    def flaky(n: int) -> int:
        calls.append(n)
        if len(calls) < 3:
            raise RuntimeError("not yet")
        return n * 2

    @qm.task(name="broken")
    def broken() -> None:
        raise ValueError("always")

    ok, bad = flaky.enqueue(21), broken.enqueue()
    qm.run(mode="drain")
    results = qm.queries.wait_for([ok, bad], timeout=10)
    assert (results[0].status, results[0].value, calls) == (JobStatus.SUCCESSFUL, 42, [21] * 3)
    assert results[1].status is JobStatus.EXCEPTION
    assert results[1].traceback is not None
    assert "ValueError: always" in results[1].traceback


def test_bytes_results_and_the_bytes_entrypoint_api_live_side_by_side(qm: QueueManager) -> None:
    @qm.task(name="blob")
    def blob(text: str) -> bytes:
        return text.encode()

    @qm.entrypoint("raw")
    def raw(job: Any) -> bytes:
        return job.payload or b""

    task_id = blob.enqueue("hi")
    [raw_id] = qm.queries.enqueue("raw", b"\x00\xff")
    qm.run(mode="drain")
    task_result, raw_result = qm.queries.wait_for([task_id, raw_id], timeout=10)
    assert task_result.result == b"hi"
    assert raw_result.result == b"\x00\xff"


def test_a_job_whose_payload_is_not_arguments_fails_with_a_clear_error(qm: QueueManager) -> None:
    @qm.task(name="typed")
    def typed(n: int) -> int:
        return n

    [job_id] = qm.queries.enqueue("typed", b"not json")
    qm.run(mode="drain")
    [result] = qm.queries.wait_for([job_id], timeout=10)
    assert result.status is JobStatus.EXCEPTION
    assert result.traceback is not None
    assert "InvalidTaskArgumentsError" in result.traceback


def test_registration_is_checked(qm: QueueManager, settings: Settings) -> None:
    async def coroutine() -> None: ...

    with pytest.raises(InvalidHandlerError, match=r"AsyncQueueManager\.task"):
        qm.task(coroutine)

    @qm.task(name="once")
    def once() -> None: ...

    with pytest.raises(ValueError, match="already registered"):
        qm.task(name="once")(once.func)
