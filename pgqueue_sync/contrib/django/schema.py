"""The queue's schema under ``manage.py migrate``: the migrations of this app run
:func:`install_or_upgrade` (and :func:`uninstall` when unapplied) for every
``PgQueueBackend`` of ``TASKS`` whose ``DATABASE`` is the database being migrated, on the
migration's own connection (in its transaction, where the database has transactional DDL,
as PostgreSQL does)."""

from __future__ import annotations

import logging
from typing import Any

from django.conf import settings
from django.utils.module_loading import import_string

from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.queries import Queries

from .backend import PgQueueBackend
from .compat import task_backends

__all__ = ["backends_on", "install_or_upgrade", "uninstall"]

logger = logging.getLogger(__name__)


def backends_on(database: str) -> list[PgQueueBackend]:
    """The PgQueueBackends of ``TASKS`` whose queue is in ``database`` (an alias of
    ``DATABASES``), one per queue (schema and prefix)."""
    found: dict[tuple[str, str], PgQueueBackend] = {}
    for alias, params in (getattr(settings, "TASKS", None) or {}).items():
        backend_path = params.get("BACKEND") if isinstance(params, dict) else None
        if not isinstance(backend_path, str):
            continue
        try:
            cls = import_string(backend_path)
        except ImportError:
            continue
        if not (isinstance(cls, type) and issubclass(cls, PgQueueBackend)):
            continue
        backend = task_backends[alias]
        assert isinstance(backend, PgQueueBackend)
        if backend.database == database:
            found.setdefault((backend.settings.schema, backend.settings.prefix), backend)
    return list(found.values())


def _queries(backend: PgQueueBackend, schema_editor: Any) -> Queries:
    connection = schema_editor.connection
    connection.ensure_connection()
    return Queries(PsycopgDriver(connection.connection), backend.settings)


def install_or_upgrade(apps: Any, schema_editor: Any) -> None:
    """Install the queue's schema, or upgrade it to this version of pgqueue-sync's (a
    ``RunPython`` of the app's migrations)."""
    for backend in backends_on(schema_editor.connection.alias):
        queries = _queries(backend, schema_editor)
        if queries.installed_version() is None:
            version = queries.install()
            logger.info("pgqueue-sync schema v%d installed (TASKS[%r])", version, backend.alias)
        else:
            applied = queries.upgrade()
            if applied:
                logger.info(
                    "pgqueue-sync schema upgraded to v%d (TASKS[%r])", applied[-1], backend.alias
                )


def uninstall(apps: Any, schema_editor: Any) -> None:
    """Drop the queue's tables, with their jobs and log (unapplying the app's first
    migration: ``manage.py migrate pgqueue_sync zero``)."""
    for backend in backends_on(schema_editor.connection.alias):
        queries = _queries(backend, schema_editor)
        if queries.installed_version() is not None:
            queries.uninstall()
            logger.info("pgqueue-sync schema removed (TASKS[%r])", backend.alias)
