"""Django's Tasks on the queue: the example project (examples/django_app) with its settings in
code, on the test database. A view enqueues a task in ``transaction.atomic()``; a rollback
leaves nothing; ``manage.py pgq_worker --mode drain`` runs it; ``get_result`` returns what it
returned, or FAILED with the error."""

from __future__ import annotations

import io
from datetime import timedelta
from typing import Any

import psycopg
import pytest

from pgqueue_sync import InvalidTaskArgumentsError, PayloadTooLargeError

pytestmark = pytest.mark.usefixtures("queue_schema")


def drain(*options: str) -> None:
    from django.core.management import call_command  # noqa: PLC0415

    call_command("pgq_worker", "--mode", "drain", "--workers", "1", *options)


def backend() -> Any:
    from pgqueue_sync.contrib.django.compat import task_backends  # noqa: PLC0415

    return task_backends["default"]


def test_a_view_enqueues_in_its_transaction_and_the_worker_runs_it(
    conn: psycopg.Connection[Any], queue_schema: str
) -> None:
    from django.test import Client  # noqa: PLC0415
    from shop.models import Signup  # noqa: PLC0415
    from shop.tasks import send_welcome  # noqa: PLC0415

    client = Client()
    response = client.post("/signup", {"email": "ada@example.com"})
    assert response.status_code == 201, response.content
    body = response.json()
    signup, result_id = body["signup"], body["task"]

    row = conn.execute(
        f'SELECT entrypoint, priority, headers FROM "{queue_schema}".pgqueue_jobs WHERE id = %s',
        (int(result_id),),
    ).fetchone()
    assert row is not None
    entrypoint, priority, headers = row
    assert entrypoint == "django.emails"  # the task's queue
    assert priority == 10  # @task(priority=10)
    assert headers["django"]["task"] == "shop.tasks.send_welcome"
    assert headers["django"]["args"] == [signup]

    result = send_welcome.get_result(result_id)
    assert result.status == "READY"
    assert result.args == [signup]
    assert not Signup.objects.get(pk=signup).welcomed

    drain()

    result.refresh()
    assert result.status == "SUCCESSFUL"
    assert result.return_value == "welcome, ada@example.com"
    assert result.is_finished
    assert result.errors == []
    assert len(result.worker_ids) == 1
    assert result.finished_at is not None
    assert Signup.objects.get(pk=signup).welcomed
    assert client.get(f"/result/{result_id}").json() == {
        "status": "SUCCESSFUL",
        "value": "welcome, ada@example.com",
    }


def test_a_rollback_leaves_neither_the_row_nor_the_job(
    conn: psycopg.Connection[Any], queue_schema: str
) -> None:
    from django.test import Client  # noqa: PLC0415
    from shop.models import Signup  # noqa: PLC0415

    before = Signup.objects.count()
    response = Client().post("/signup", {"email": ""})
    assert response.status_code == 400
    assert Signup.objects.count() == before
    row = conn.execute(f'SELECT count(*) FROM "{queue_schema}".pgqueue_jobs').fetchone()
    assert row == (0,)


def test_an_enqueue_outside_a_transaction_commits_at_once(
    conn: psycopg.Connection[Any], queue_schema: str
) -> None:
    from django.db import transaction  # noqa: PLC0415
    from shop.tasks import add  # noqa: PLC0415

    assert not transaction.get_connection().in_atomic_block
    result = add.enqueue(2, 3)
    # Another connection sees it: it was committed by the enqueue itself.
    seen = conn.execute(
        f'SELECT count(*) FROM "{queue_schema}".pgqueue_jobs WHERE id = %s', (int(result.id),)
    ).fetchone()
    assert seen == (1,)
    drain()
    assert add.get_result(result.id).return_value == 5


def test_a_failed_task_is_failed_with_its_error() -> None:
    from shop.tasks import refuse  # noqa: PLC0415

    result = refuse.enqueue("no thanks")
    drain()
    result.refresh()
    assert result.status == "FAILED"
    with pytest.raises(ValueError, match="Task failed"):
        _ = result.return_value
    [error] = result.errors
    assert error.exception_class_path == "builtins.ValueError"
    assert error.exception_class is ValueError
    assert "no thanks" in error.traceback
    assert "in refuse" in error.traceback


def test_priorities_order_the_jobs_and_run_after_defers_them(
    conn: psycopg.Connection[Any], queue_schema: str
) -> None:
    from django.utils import timezone  # noqa: PLC0415
    from shop.tasks import add  # noqa: PLC0415

    from pgqueue_sync.contrib.django.compat import task_started  # noqa: PLC0415

    low = add.using(priority=-100).enqueue(1, 1)
    high = add.using(priority=100).enqueue(2, 2)
    later = timezone.now() + timedelta(hours=1)
    deferred = add.using(run_after=later).enqueue(3, 3)

    row = conn.execute(
        f'SELECT execute_after FROM "{queue_schema}".pgqueue_jobs WHERE id = %s',
        (int(deferred.id),),
    ).fetchone()
    assert row is not None
    assert row[0] == later

    started: list[str] = []

    def record(sender: object, task_result: Any, **kwargs: object) -> None:
        started.append(task_result.id)

    task_started.connect(record)
    try:
        drain("--batch-size", "1")
    finally:
        task_started.disconnect(record)
    assert started == [high.id, low.id]  # the higher priority ran first
    assert add.get_result(deferred.id).status == "READY"  # not due: drain left it
    assert add.get_result(deferred.id).task.run_after == later


def test_arguments_are_refused_at_enqueue_when_they_cannot_be_carried() -> None:
    from shop.tasks import add  # noqa: PLC0415

    with pytest.raises(InvalidTaskArgumentsError, match="cannot take these arguments"):
        add.enqueue(1)  # type: ignore[call-arg]
    with pytest.raises(InvalidTaskArgumentsError, match="JSON"):
        add.enqueue(1, object())  # type: ignore[arg-type]
    with pytest.raises(PayloadTooLargeError):
        add.enqueue("x" * (2 * 1024 * 1024), 1)  # type: ignore[arg-type]
    assert backend().queries.queue_size() == []


def test_results_of_unknown_ids_do_not_exist() -> None:
    from shop.tasks import add  # noqa: PLC0415

    from pgqueue_sync.contrib.django.compat import TaskResultDoesNotExist  # noqa: PLC0415

    for bad in ("12345", "abc", "-1", "0"):
        with pytest.raises(TaskResultDoesNotExist):
            add.get_result(bad)
    [not_django] = backend().queries.enqueue("plain", b"bytes")
    with pytest.raises(TaskResultDoesNotExist, match="not a task of Django"):
        add.get_result(str(not_django))


def test_the_feature_flags_say_what_the_backend_does() -> None:
    found = backend()
    assert found.supports_defer
    assert found.supports_get_result
    assert found.supports_priority
    assert found.supports_async_task
    assert found.check() == []


def test_a_worker_serves_only_the_queues_it_is_given() -> None:
    from shop.tasks import add, send_welcome  # noqa: PLC0415

    other = add.enqueue(1, 2)  # queue "default"
    email = send_welcome.enqueue(999_999)  # queue "emails" (no such signup: would fail)
    drain("--queue", "default")
    assert add.get_result(other.id).status == "SUCCESSFUL"
    assert send_welcome.get_result(email.id).status == "READY"


def test_the_pgq_commands_work_on_the_backends_queue(
    capsys: pytest.CaptureFixture[str], queue_schema: str
) -> None:
    from django.core.management import call_command  # noqa: PLC0415
    from shop.tasks import add  # noqa: PLC0415

    add.enqueue(1, 2)
    call_command("pgq", "status")
    out = capsys.readouterr().out
    assert "django.default" in out
    call_command("pgq", "verify")
    assert f"current in schema '{queue_schema}'" in capsys.readouterr().out
    from django.core.management.base import CommandError  # noqa: PLC0415

    with pytest.raises(CommandError, match="exited with code 2"):
        call_command("pgq_worker", "--queue", "nope")
    assert "not one of" in capsys.readouterr().err
    stdout = io.StringIO()
    call_command("pgq", "status", "--json", stdout=stdout)  # click prints on sys.stdout
    assert '"django.default"' in capsys.readouterr().out


def test_a_task_that_takes_its_context_sees_its_own_result() -> None:
    from tests.django.tasks import attempt_and_id  # noqa: PLC0415

    result = attempt_and_id.enqueue("hello")
    drain()
    assert attempt_and_id.get_result(result.id).return_value == [
        result.id,
        1,
        "hello",
        "RUNNING",
    ]


def test_an_async_task_runs() -> None:
    from tests.django.tasks import double  # noqa: PLC0415

    result = double.enqueue(21)
    drain()
    value: Any = double.get_result(result.id).return_value  # typed as the coroutine
    assert value == 42


def flaky_backend(schema: str, wait: Any) -> Any:
    """TASKS whose queue "default" retries (3 attempts, ``wait`` between them); the table of
    the flaky task's attempts emptied."""
    import tenacity  # noqa: PLC0415
    from django.db import connection  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415

    from pgqueue_sync import RetryPolicy  # noqa: PLC0415
    from tests.django.conftest import tasks_setting  # noqa: PLC0415

    with connection.cursor() as cur:
        cur.execute("DROP TABLE IF EXISTS flaky_attempts")
    retry = RetryPolicy(stop=tenacity.stop_after_attempt(3), wait=wait)
    return override_settings(
        TASKS=tasks_setting(schema, QUEUE_POLICIES={"default": {"retry": retry}})
    )


def test_queue_policies_retry_a_task_and_attempts_count_them(schema: str) -> None:
    import tenacity  # noqa: PLC0415

    from tests.django.tasks import flaky  # noqa: PLC0415

    with flaky_backend(schema, tenacity.wait_none()):
        result = flaky.enqueue(2)
        drain()
        result.refresh()
    assert result.status == "SUCCESSFUL"
    assert result.return_value == "succeeded at attempt 3"
    assert result.attempts == 3


def test_a_task_waiting_for_its_retry_is_ready_with_the_error(schema: str) -> None:
    import tenacity  # noqa: PLC0415

    from tests.django.tasks import flaky  # noqa: PLC0415

    with flaky_backend(schema, tenacity.wait_fixed(3600)):
        result = flaky.enqueue(2)
        drain()
        result.refresh()
    assert result.status == "READY"
    assert result.attempts == 1
    [error] = result.errors
    assert error.exception_class_path == "builtins.RuntimeError"
    assert "attempt 1 fails" in error.traceback
