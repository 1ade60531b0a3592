"""``python manage.py pgq_worker`` and ``python manage.py pgq ...`` as an operator runs them:
the example project's manage.py in a process of its own, its settings module read from the
environment."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from typing import Any

import pytest

from tests.django.conftest import EXAMPLE

pytestmark = pytest.mark.usefixtures("queue_schema")


def manage(
    dsn: str, shop_schema: str, queue_schema: str, *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "shop.settings",
        "PGQUEUE_DSN": dsn,
        "SHOP_SCHEMA": shop_schema,
        "PGQUEUE_SCHEMA": queue_schema,
    }
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=EXAMPLE,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_manage_py_pgq_worker_runs_the_tasks(dsn: str, shop_schema: str, queue_schema: str) -> None:
    from shop.tasks import add  # noqa: PLC0415

    result = add.enqueue(20, 22)
    done = manage(dsn, shop_schema, queue_schema, "pgq_worker", "--mode", "drain")
    assert done.returncode == 0, done.stderr
    assert "2 threads" in done.stderr  # RUN_OPTIONS of the example's settings: workers 2
    assert add.get_result(result.id).return_value == 42

    status = manage(dsn, shop_schema, queue_schema, "pgq", "status", "--json")
    assert status.returncode == 0, status.stderr
    rows: list[dict[str, Any]] = json.loads(status.stdout)
    assert [r["entrypoint"] for r in rows] == ["django.default"]


def test_manage_py_reports_usage_errors_with_exit_code_2(
    dsn: str, shop_schema: str, queue_schema: str
) -> None:
    done = manage(dsn, shop_schema, queue_schema, "pgq_worker", "--queue", "nope")
    assert done.returncode == 2
    assert "'nope' is not one of TASKS['default']'s QUEUES" in done.stderr
    done = manage(dsn, shop_schema, queue_schema, "pgq_worker", "--workers", "0")
    assert done.returncode == 2
    helped = manage(dsn, shop_schema, queue_schema, "help", "pgq_worker")
    assert helped.returncode == 0
    assert "--mode [continuous|drain]" in helped.stdout
