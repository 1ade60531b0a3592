"""Tasks of the tests beyond the example's: with a context, async, flaky. Imported once Django
is configured (the ``shop_schema`` fixture)."""

from __future__ import annotations

from typing import Any

try:
    from django.tasks import TaskContext, task
except ImportError:  # Django 4.2 to 5.2: the backport
    from django_tasks import TaskContext, task  # type: ignore[no-redef,assignment]


@task(takes_context=True)
def attempt_and_id(context: TaskContext[Any, Any], label: str) -> list[Any]:
    """What the task sees of its own result: its id, attempt number and arguments."""
    result = context.task_result
    return [result.id, context.attempt, label, result.status]


@task
async def double(n: int) -> int:
    return 2 * n


@task
def flaky(fail_times: int) -> str:
    """Fails its first ``fail_times`` attempts (counted in a table of the test's schema)."""
    from django.db import connection  # noqa: PLC0415

    with connection.cursor() as cur:
        cur.execute("CREATE TABLE IF NOT EXISTS flaky_attempts (n int)")
        cur.execute("INSERT INTO flaky_attempts VALUES (1)")
        cur.execute("SELECT count(*) FROM flaky_attempts")
        row = cur.fetchone()
    assert row is not None
    if row[0] <= fail_times:
        raise RuntimeError(f"attempt {row[0]} fails")
    return f"succeeded at attempt {row[0]}"
