"""A real Django project for the tests: the example's (examples/django_app), its settings
configured here in code, on the test database (the ``dsn`` fixture). Its tables live in a
schema of the session's; each test gets a queue of its own (TASKS' SCHEMA, in the test's
schema)."""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "django_app"


def database_settings(dsn: str, search_path: str) -> dict[str, Any]:
    """``DATABASES["default"]`` for the test database, its tables in ``search_path``."""
    params = {key: str(value) for key, value in conninfo_to_dict(dsn).items()}
    return {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": params.get("dbname", "postgres"),
        "USER": params.get("user", ""),
        "PASSWORD": params.get("password", ""),
        "HOST": params.get("host", ""),
        "PORT": params.get("port", ""),
        "OPTIONS": {"options": f"-c search_path={search_path}"},
    }


def tasks_setting(schema: str, **options: Any) -> dict[str, Any]:
    return {
        "default": {
            "BACKEND": "pgqueue_sync.contrib.django.PgQueueBackend",
            "QUEUES": ["default", "emails"],
            "OPTIONS": {"SCHEMA": schema, "RUN_OPTIONS": {"workers": 1}, **options},
        }
    }


@pytest.fixture(scope="session")
def shop_schema(dsn: str) -> Iterator[str]:
    """Django configured (once: Django cannot be configured twice in a process), its tables
    migrated into a schema of this session."""
    import django  # noqa: PLC0415
    from django.conf import settings  # noqa: PLC0415
    from django.core.management import call_command  # noqa: PLC0415

    name = f"dj_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    sys.path.insert(0, str(EXAMPLE))
    settings.configure(
        SECRET_KEY="tests",
        DEBUG=False,
        ALLOWED_HOSTS=["testserver"],
        USE_TZ=True,
        ROOT_URLCONF="shop.urls",
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
        INSTALLED_APPS=["pgqueue_sync.contrib.django", "shop"],
        DATABASES={"default": database_settings(dsn, name)},
        TASKS=tasks_setting(name),
    )
    django.setup()
    call_command("migrate", verbosity=0)
    try:
        yield name
    finally:
        from django.db import connections  # noqa: PLC0415

        connections.close_all()
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{name}" CASCADE')


@pytest.fixture
def queue_schema(shop_schema: str, schema: str) -> Iterator[str]:
    """TASKS on a queue of this test's own (installed), in the test's schema."""
    from django.test import override_settings  # noqa: PLC0415

    from pgqueue_sync.contrib.django import PgQueueBackend  # noqa: PLC0415
    from pgqueue_sync.contrib.django.compat import task_backends  # noqa: PLC0415

    with override_settings(TASKS=tasks_setting(schema)):
        backend = task_backends["default"]
        assert isinstance(backend, PgQueueBackend)
        backend.queries.install()
        yield schema
