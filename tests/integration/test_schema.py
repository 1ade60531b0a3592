from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgqueue_sync import (
    PsycopgDriver,
    Queries,
    QueueManager,
    SchemaNotInstalledError,
    SchemaVersionError,
    Settings,
)
from pgqueue_sync.sql import SCHEMA_VERSION


def test_install_is_idempotent_and_verify_reports_the_version(
    driver: PsycopgDriver, settings: Settings
) -> None:
    q = Queries(driver, settings)
    with pytest.raises(SchemaNotInstalledError, match="pgq-sync install"):
        q.verify()
    assert q.install() == SCHEMA_VERSION
    assert q.install() == SCHEMA_VERSION
    assert q.verify() == SCHEMA_VERSION


def test_uninstall_removes_everything(
    driver: PsycopgDriver, settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    q = Queries(driver, settings)
    q.install()
    q.enqueue("a", b"x")
    q.uninstall()
    with pytest.raises(SchemaNotInstalledError):
        q.verify()
    left = conn.execute(
        """
        SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %s
        UNION ALL
        SELECT count(*) FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        WHERE n.nspname = %s AND t.typtype = 'e'
        """,
        (settings.schema, settings.schema),
    ).fetchall()
    assert [row[0] for row in left] == [0, 0]
    q.install()
    assert q.verify() == SCHEMA_VERSION


def test_newer_or_older_schema_versions_are_refused(
    driver: PsycopgDriver, settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    q = Queries(driver, settings)
    q.install()
    table = settings.ident("version").as_string(None)
    conn.execute(f"UPDATE {table} SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaVersionError, match="upgrade pgqueue-sync"):
        q.verify()
    with pytest.raises(SchemaVersionError):
        q.install()
    conn.execute(f"UPDATE {table} SET version = %s", (SCHEMA_VERSION - 1,))
    with pytest.raises(SchemaVersionError, match="pgq-sync upgrade"):
        q.verify()


def test_prefixes_keep_queues_apart_in_one_schema(driver: PsycopgDriver, schema: str) -> None:
    a = Queries(driver, Settings(schema=schema, prefix="a_"))
    b = Queries(driver, Settings(schema=schema, prefix="b_"))
    a.install()
    b.install()
    a.enqueue(["x", "x"], [b"1", b"2"])
    b.enqueue("x", b"3")
    assert sum(s.count for s in a.queue_size()) == 2
    assert sum(s.count for s in b.queue_size()) == 1
    b.uninstall()
    assert a.verify() == SCHEMA_VERSION


def test_missing_schema_is_reported_by_every_entry_point(
    driver: PsycopgDriver, settings: Settings
) -> None:
    qm = QueueManager(driver, settings=settings)

    @qm.entrypoint("a")
    def handler(job: object) -> None:
        pass

    with pytest.raises(SchemaNotInstalledError, match="pgq-sync install"):
        qm.queries.enqueue("a", b"x")
    with pytest.raises(SchemaNotInstalledError, match="pgq-sync install"):
        qm.queries.queue_size()
    with pytest.raises(SchemaNotInstalledError, match="pgq-sync install"):
        qm.run(dequeue_timeout=0.1)


def test_one_notify_per_insert_statement(
    driver: PsycopgDriver, settings: Settings, dsn: str
) -> None:
    q = Queries(driver, settings)
    q.install()
    with psycopg.connect(dsn, autocommit=True) as listener:
        listener.execute(f'LISTEN "{settings.channel}"')
        q.enqueue(["a"] * 10, [None] * 10)  # one INSERT
        q.enqueue(["a"] * 300, [None] * 300)  # one COPY
        events = list(listener.notifies(timeout=0.5))
    assert len(events) == 2
    assert all(e.payload == '{"type": "insert"}' for e in events)
