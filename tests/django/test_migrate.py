"""``manage.py migrate`` installs the queue's schema (and upgrades an older one) with the
contrib app's migration; ``migrate pgqueue_sync zero`` removes it. The app's newest
migration brings the library's schema version."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgqueue_sync import Settings
from pgqueue_sync.sql import SCHEMA_VERSION
from tests.django.conftest import tasks_setting
from tests.integration.test_migrations import install_v1


@pytest.fixture
def on_the_tests_schema(shop_schema: str, schema: str) -> Iterator[Any]:
    """TASKS on the test's schema (nothing installed); the app's migration unapplied, and
    applied again afterwards."""
    from django.core.management import call_command  # noqa: PLC0415
    from django.test import override_settings  # noqa: PLC0415

    from pgqueue_sync.contrib.django.compat import task_backends  # noqa: PLC0415

    with override_settings(TASKS=tasks_setting(schema)):
        call_command("migrate", "pgqueue_sync", "zero", verbosity=0)
        try:
            yield task_backends["default"]
        finally:
            call_command("migrate", "pgqueue_sync", verbosity=0)


def test_migrate_installs_the_queue_and_zero_removes_it(on_the_tests_schema: Any) -> None:
    from django.core.management import call_command  # noqa: PLC0415

    queries = on_the_tests_schema.queries
    assert queries.installed_version() is None
    call_command("migrate", "pgqueue_sync", verbosity=0)
    assert queries.installed_version() == SCHEMA_VERSION
    assert queries.verify() == SCHEMA_VERSION
    call_command("migrate", "pgqueue_sync", "zero", verbosity=0)
    assert queries.installed_version() is None


def test_migrate_upgrades_an_older_queue(
    on_the_tests_schema: Any, conn: psycopg.Connection[Any], schema: str
) -> None:
    from django.core.management import call_command  # noqa: PLC0415

    install_v1(conn, Settings(schema=schema))
    queries = on_the_tests_schema.queries
    assert queries.installed_version() == 1
    call_command("migrate", "pgqueue_sync", verbosity=0)
    assert queries.installed_version() == SCHEMA_VERSION
    queries.verify()


def test_the_newest_migration_brings_the_librarys_schema_version(shop_schema: str) -> None:
    """A release whose schema changes must add a migration (else migrate would not upgrade)."""
    from pgqueue_sync.contrib.django import migrations  # noqa: PLC0415

    names = sorted(m.name for m in pkgutil.iter_modules(migrations.__path__))
    newest = importlib.import_module(f"{migrations.__name__}.{names[-1]}")
    assert newest.SCHEMA_VERSION == SCHEMA_VERSION
