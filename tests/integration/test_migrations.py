"""Schema migrations, run for real: a queue installed by v1 is filled, upgraded, compared."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue_sync import (
    PsycopgDriver,
    Queries,
    QueueManager,
    SchemaNotInstalledError,
    SchemaVersionError,
    Settings,
)
from pgqueue_sync.cli import main
from pgqueue_sync.sql import MIGRATIONS, SCHEMA_VERSION, install_script, statements, upgrade_script
from tests.conftest import SqlQueries
from tests.fixtures.schema_v1 import SCHEMA_V1

Conn = psycopg.Connection[Any]
WORKER = uuid.UUID("00000000-0000-0000-0000-0000000000aa")


def install_v1(conn: Conn, settings: Settings) -> None:
    """What `pgq-sync install` of version 1 did."""
    with conn.transaction():
        conn.execute(statements(settings).compose(SCHEMA_V1))
        conn.execute(statements(settings).record_version, {"version": 1})


def fill_v1(conn: Conn, settings: Settings) -> None:
    """Jobs in every state, log rows of every status, limit rows: written as v1 wrote them."""
    jobs, log, limits = (settings.ident(k) for k in ("jobs", "log", "limits"))
    conn.execute(
        sql.SQL(
            """
        INSERT INTO {jobs} (priority, created, heartbeat, execute_after, status, entrypoint,
                            payload, attempts, worker_id, dedupe_key, headers, last_error,
                            cancel_requested)
        VALUES
          -- queued and due; unique; with headers
          (5, now() - interval '1 hour', now(), now() - interval '1 minute', 'queued', 'a',
           '\\x0001ff', 0, NULL, 'k-queued', '{{"trace": "t1", "n": [1, 2]}}', NULL, false),
          -- deferred
          (0, now(), now(), now() + interval '1 hour', 'queued', 'a', NULL, 0, NULL, NULL,
           NULL, NULL, false),
          -- a retry waiting for its backoff
          (0, now(), now(), now() + interval '30 seconds', 'queued', 'b', 'x', 1, NULL,
           NULL, NULL, 'Traceback: ValueError', false),
          -- picked by a worker that died long ago (stale heartbeat); unique; cancel asked
          (1, now(), now() - interval '10 minutes', now(), 'picked', 'a', 'y', 1, %(worker)s,
           'k-picked', NULL, NULL, true),
          -- picked by a live worker
          (0, now(), now(), now(), 'picked', 'b', NULL, 2, %(worker)s, NULL, NULL,
           'Traceback: first try', false),
          -- failed: retries exhausted, kept for inspection
          (0, now(), now(), now(), 'failed', 'b', 'z', 3, NULL, 'k-failed', NULL,
           'Traceback: third try', false)
        """
        ).format(jobs=jobs),
        {"worker": WORKER},
    )
    conn.execute(
        sql.SQL(
            """
        INSERT INTO {log} (job_id, entrypoint, status, priority, attempts, worker_id, duration,
                           traceback, result, result_json, headers, enqueued, created)
        VALUES
          (101, 'a', 'successful', 0, 1, %(worker)s, interval '0.25 seconds', NULL, 'ok',
           NULL, '{{"h": 1}}', now() - interval '1 minute', now()),
          (102, 'a', 'successful', 2, 1, %(worker)s, interval '1 second', NULL, NULL,
           '{{"value": [1, "two", null]}}', NULL, now(), now()),
          (103, 'b', 'exception', 0, 1, %(worker)s, interval '0.1 seconds', 'Traceback: boom',
           NULL, NULL, NULL, now(), now()),
          (104, 'b', 'canceled', 0, 0, NULL, NULL, NULL, NULL, NULL, NULL, now(), now()),
          (105, 'b', 'failed', 0, 3, %(worker)s, interval '2 seconds', 'Traceback: gave up',
           NULL, NULL, NULL, now(), now())
        """
        ).format(log=log),
        {"worker": WORKER},
    )
    conn.execute(
        sql.SQL(
            "INSERT INTO {limits} (entrypoint, tokens, refilled) VALUES "
            "('a', 2.5, now() - interval '5 seconds'), ('b', 0, timestamptz '2000-01-01 00:00Z')"
        ).format(limits=limits)
    )


def rows(conn: Conn, settings: Settings, key: str, columns: list[str] | None = None) -> list[Any]:
    names = sql.SQL("*") if columns is None else sql.SQL(", ").join(map(sql.Identifier, columns))
    order = "version" if key == "version" else "1"
    with conn.cursor() as cur:
        cur.execute(
            sql.SQL("SELECT {} FROM {} ORDER BY " + order).format(names, settings.ident(key))
        )
        assert cur.description is not None
        return [[d.name for d in cur.description], *cur.fetchall()]


def snapshot(conn: Conn, settings: Settings, like: dict[str, list[Any]] | None = None) -> Any:
    """Every row of every table; with ``like``, only the columns that snapshot had."""
    return {
        key: rows(conn, settings, key, None if like is None else like[key][0])
        for key in ("jobs", "log", "limits")
    }


def test_a_v1_queue_with_jobs_in_every_state_is_upgraded_losing_nothing(
    conn: Conn, settings: Settings, driver: PsycopgDriver
) -> None:
    install_v1(conn, settings)
    fill_v1(conn, settings)
    before = snapshot(conn, settings)
    assert [len(before[k]) - 1 for k in before] == [6, 5, 2]
    q = SqlQueries(driver, settings)
    assert q.installed_version() == 1

    assert q.upgrade() == list(range(2, SCHEMA_VERSION + 1))

    assert snapshot(conn, settings, like=before) == before  # every row, every v1 column
    versions = [r[0] for r in rows(conn, settings, "version", ["version"])[1:]]
    assert versions == list(range(1, SCHEMA_VERSION + 1))
    assert q.verify() == SCHEMA_VERSION
    jobs = q.get_jobs(range(1, 7))
    assert [(j.lost, j.rescued, j.started) for j in jobs] == [(0, 0, None)] * 6
    # The upgraded queue works: ids continue, the unique index holds, the dead worker's job
    # is rescued by the next claim.
    [new] = q.enqueue("a", b"new")
    assert new == 7
    with pytest.raises(Exception, match="k-picked"):
        q.enqueue("a", None, dedupe_key="k-picked")
    claimed = q.dequeue(10, ["a"], uuid.uuid4(), timedelta(minutes=1))
    assert [(j.id, j.attempts, j.rescued, j.cancel_requested) for j in claimed] == [
        (1, 1, 0, False),  # priority 5
        (4, 2, 1, True),  # the stale one: rescued, its cancel request kept
        (7, 1, 0, False),
    ]


def test_upgrade_is_idempotent_and_concurrent_upgrades_apply_each_step_once(
    dsn: str, conn: Conn, settings: Settings
) -> None:
    install_v1(conn, settings)
    results: list[list[int]] = []
    errors: list[BaseException] = []

    def upgrade() -> None:
        driver = PsycopgDriver(dsn)
        try:
            results.append(Queries(driver, settings).upgrade())
        except BaseException as exc:
            errors.append(exc)
        finally:
            driver.close()

    threads = [threading.Thread(target=upgrade) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors
    assert sorted(results) == [[], [], [], list(range(2, SCHEMA_VERSION + 1))]
    versions = [r[0] for r in rows(conn, settings, "version", ["version"])[1:]]
    assert versions == list(range(1, SCHEMA_VERSION + 1))


def test_install_refuses_to_upgrade_silently(
    conn: Conn, settings: Settings, driver: PsycopgDriver
) -> None:
    install_v1(conn, settings)
    q = Queries(driver, settings)
    with pytest.raises(SchemaVersionError, match=r"older than this pgqueue-sync.*pgq-sync upgrade"):
        q.install()
    with pytest.raises(SchemaVersionError, match="pgq-sync upgrade"):
        q.verify()
    assert q.installed_version() == 1  # nothing changed
    q.upgrade()
    assert q.install() == SCHEMA_VERSION


def test_upgrade_of_nothing_says_to_install(driver: PsycopgDriver, settings: Settings) -> None:
    with pytest.raises(SchemaNotInstalledError, match="pgq-sync install"):
        Queries(driver, settings).upgrade()


def set_versions(conn: Conn, settings: Settings, versions: list[int]) -> None:
    table = settings.ident("version")
    with conn.transaction():
        conn.execute(sql.SQL("DELETE FROM {}").format(table))
        for v in versions:
            conn.execute(sql.SQL("INSERT INTO {} (version) VALUES (%s)").format(table), (v,))


@pytest.mark.parametrize(
    ("versions", "message"),
    [
        ([0], "schema version 0 was never released"),
        ([-3], "schema version -3 was never released"),
        ([], "version table .* is empty"),
        ([1, 3], r"records versions \[1, 3\]: the upgrade to v2 is missing"),
        ([SCHEMA_VERSION + 1], "newer than this pgqueue-sync.*upgrade pgqueue-sync"),
    ],
)
def test_a_version_table_that_makes_no_sense_is_a_clear_typed_error(
    conn: Conn,
    settings: Settings,
    driver: PsycopgDriver,
    versions: list[int],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    q = Queries(driver, settings)
    q.install()
    set_versions(conn, settings, versions)
    calls: list[Callable[[], object]] = [q.install, q.upgrade, q.verify]
    for call in calls:
        with pytest.raises(SchemaVersionError, match=message):
            call()
    dsn = conn.info.dsn
    for command in ("install", "upgrade", "verify"):
        assert main([command, "--dsn", dsn, "--schema", settings.schema]) == 1
        err = capsys.readouterr().err
        assert err.startswith("error: ")
        assert "Traceback" not in err


@pytest.mark.parametrize("version", [1, SCHEMA_VERSION + 1])
def test_a_worker_refuses_a_schema_of_another_version(
    conn: Conn, settings: Settings, driver: PsycopgDriver, version: int
) -> None:
    if version == 1:
        install_v1(conn, settings)
        expected = "v1, older than this pgqueue-sync.*run `pgq-sync upgrade`"
    else:
        Queries(driver, settings).install()
        set_versions(conn, settings, [SCHEMA_VERSION, version])
        expected = f"v{version}, newer than this pgqueue-sync.*upgrade pgqueue-sync"
    qm = QueueManager(driver, settings=settings)

    @qm.entrypoint("a")
    def handler(job: object) -> None:
        raise AssertionError("never runs")

    with pytest.raises(SchemaVersionError, match=expected):
        qm.run(mode="drain", dequeue_timeout=0.1)


def test_the_cli_installs_upgrades_and_prints_the_sql(
    conn: Conn, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--dsn", conn.info.dsn, "--schema", settings.schema]
    install_v1(conn, settings)
    assert main(["install", *common]) == 1
    assert "run `pgq-sync upgrade`" in capsys.readouterr().err
    assert main(["sql", "upgrade", *common]) == 0  # --from: read from the database
    assert capsys.readouterr().out == upgrade_script(settings, 1)
    assert main(["upgrade", *common]) == 0
    assert capsys.readouterr().out.startswith(
        f"pgqueue-sync schema upgraded from v1 to v{SCHEMA_VERSION} in schema {settings.schema!r}"
    )
    assert main(["upgrade", *common]) == 0
    assert "already current" in capsys.readouterr().out
    assert main(["verify", *common]) == 0
    assert "is installed and current" in capsys.readouterr().out
    assert main(["sql", "install", "--schema", "elsewhere", "--prefix", "p_"]) == 0
    assert capsys.readouterr().out == install_script(Settings(schema="elsewhere", prefix="p_"))


# -- the catalog of an upgraded schema is that of a fresh install ---------------------------

CATALOG_QUERIES = {
    "columns": """
        SELECT table_name, ordinal_position, column_name, data_type, udt_name, column_default,
               is_nullable, is_identity, identity_generation, identity_start,
               identity_increment, identity_maximum, identity_minimum, identity_cycle,
               character_maximum_length, numeric_precision, datetime_precision, collation_name
        FROM information_schema.columns WHERE table_schema = %(schema)s
        ORDER BY table_name, ordinal_position
    """,
    "relations": """
        SELECT c.relname, c.relkind, c.relpersistence, c.reloptions, c.relhasindex,
               c.relhastriggers, c.relnatts
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(schema)s ORDER BY c.relname
    """,
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes
        WHERE schemaname = %(schema)s ORDER BY indexname
    """,
    "constraints": """
        SELECT conrelid::regclass::text, conname, contype, pg_get_constraintdef(c.oid)
        FROM pg_constraint c JOIN pg_namespace n ON n.oid = c.connamespace
        WHERE n.nspname = %(schema)s ORDER BY conname
    """,
    "triggers": """
        SELECT t.tgname, pg_get_triggerdef(t.oid), t.tgenabled
        FROM pg_trigger t JOIN pg_class c ON c.oid = t.tgrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(schema)s AND NOT t.tgisinternal ORDER BY t.tgname
    """,
    "functions": """
        SELECT p.proname, pg_get_functiondef(p.oid)
        FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
        WHERE n.nspname = %(schema)s ORDER BY p.proname
    """,
    "types": """
        SELECT t.typname, e.enumsortorder, e.enumlabel
        FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
        JOIN pg_enum e ON e.enumtypid = t.oid
        WHERE n.nspname = %(schema)s ORDER BY t.typname, e.enumsortorder
    """,
    "sequences": """
        SELECT c.relname, s.seqtypid::regtype::text, s.seqstart, s.seqincrement, s.seqmax,
               s.seqmin, s.seqcache, s.seqcycle
        FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname = %(schema)s ORDER BY c.relname
    """,
}


def catalog(conn: Conn, schema: str) -> dict[str, list[tuple[Any, ...]]]:
    """What the schema holds, as the catalogs describe it, with its name taken out."""

    def anonymous(value: Any) -> Any:
        if isinstance(value, str):
            return value.replace(schema, "<schema>")
        if isinstance(value, list):
            return [anonymous(v) for v in value]
        return value

    found = {}
    for name, query in CATALOG_QUERIES.items():
        result = conn.execute(query, {"schema": schema}).fetchall()
        found[name] = [tuple(anonymous(v) for v in row) for row in result]
    return found


def by_queries_install(conn: Conn, settings: Settings) -> None:
    Queries(PsycopgDriver(conn), settings).install()


def by_v1_and_upgrade(conn: Conn, settings: Settings) -> None:
    install_v1(conn, settings)
    fill_v1(conn, settings)
    Queries(PsycopgDriver(conn), settings).upgrade()


def by_install_script(conn: Conn, settings: Settings) -> None:
    with conn.transaction():
        conn.execute(install_script(settings).encode())


def by_v1_and_upgrade_script(conn: Conn, settings: Settings) -> None:
    install_v1(conn, settings)
    with conn.transaction():
        conn.execute(upgrade_script(settings, 1).encode())


@pytest.mark.parametrize(
    "build",
    [by_v1_and_upgrade, by_install_script, by_v1_and_upgrade_script],
    ids=["v1+upgrade", "sql-install", "v1+sql-upgrade"],
)
def test_every_way_to_the_current_schema_gives_the_same_catalog(
    conn: Conn, settings: Settings, build: Callable[[Conn, Settings], None]
) -> None:
    fresh = Settings(schema=f"{settings.schema}_fresh")
    try:
        by_queries_install(conn, fresh)
        build(conn, settings)
        expected, got = catalog(conn, fresh.schema), catalog(conn, settings.schema)
        assert expected["columns"]  # the comparison is not vacuous
        for part in CATALOG_QUERIES:
            assert got[part] == expected[part], part
        assert Queries(PsycopgDriver(conn), settings).verify() == SCHEMA_VERSION
    finally:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(fresh.schema))
        )


def test_migrations_lead_from_version_1_to_the_current_one_without_a_gap() -> None:
    assert sorted(MIGRATIONS) == list(range(2, SCHEMA_VERSION + 1))


def test_concurrent_installs_of_queues_with_different_prefixes_into_one_new_schema(
    dsn: str, schema: str
) -> None:
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def install(prefix: str) -> None:
        driver = PsycopgDriver(dsn)
        try:
            barrier.wait(10)
            Queries(driver, Settings(schema=schema, prefix=prefix)).install()
        except BaseException as exc:
            errors.append(exc)
        finally:
            driver.close()

    threads = [threading.Thread(target=install, args=(f"p{i}_",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert errors == []
    driver = PsycopgDriver(dsn)
    try:
        for i in range(4):
            assert Queries(driver, Settings(schema=schema, prefix=f"p{i}_")).verify() >= 1
    finally:
        driver.close()
