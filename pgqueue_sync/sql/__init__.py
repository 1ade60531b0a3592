"""Every SQL statement of pgqueue-sync, named, with the schema DDL and its migrations.

Identifiers (schema, table prefix) come from :class:`~pgqueue_sync.settings.Settings`,
which validates them, and are quoted with :class:`psycopg.sql.Identifier`; values always
travel as parameters. Statements are composed once per Settings and kept as bytes, so the
hot path does no string work and psycopg can prepare them.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

from psycopg import sql

from pgqueue_sync.errors import SchemaVersionError
from pgqueue_sync.settings import Settings

from . import dml
from . import schedules as sched
from .ddl import (
    CREATE_SCHEMA,
    DDL,
    DROP_SCHEMA,
    LOCK,
    MIGRATIONS,
    RECORD_VERSION,
    SCHEMA_VERSION,
    UNINSTALL,
)

if TYPE_CHECKING:
    from typing_extensions import LiteralString

__all__ = [
    "INSERT_EVENT",
    "REQUEUE_EVENT",
    "SCHEMA_VERSION",
    "Statements",
    "install_lock_key",
    "install_script",
    "migration_path",
    "statements",
    "upgrade_script",
]

INSERT_EVENT = json.dumps({"type": "insert"})
REQUEUE_EVENT = json.dumps({"type": "requeue"})

# Timestamps come from the database clock unless a test clock passes one in.
_NOW = "COALESCE(%(now)s::timestamptz, now())"


class Statements:
    """The statements for one Settings, composed once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self._idents: dict[str, sql.Composable] = {
            "schema": sql.Identifier(s.schema),
            **{
                key: s.ident(key)
                for key in ("jobs", "log", "limits", "schedules", "version", "status")
            },
            "notify_fn": s.ident("notify_fn"),
            **{
                key: sql.Identifier(s.name(key))
                for key in (
                    "notify_trigger",
                    "dequeue_idx",
                    "picked_idx",
                    "dedupe_idx",
                    "log_job_idx",
                    "log_created_idx",
                )
            },
            "channel": sql.Literal(s.channel),
            "channel_ident": sql.Identifier(s.channel),
            "insert_event": sql.Literal(INSERT_EVENT),
            "requeue_event": sql.Literal(REQUEUE_EVENT),
            "jobs_regclass": sql.Literal(s.ident("jobs").as_string(None)),
            "now": sql.SQL(_NOW),
            "job_columns": sql.SQL(dml.JOB_COLUMNS),
            "log_columns": sql.SQL(dml.LOG_COLUMNS),
        }
        c = self.compose
        # schema
        self.install = c(DDL)
        self.migrations = {v: c(ddl) for v, ddl in MIGRATIONS.items()}
        self.uninstall = c(UNINSTALL)
        self.create_schema = c(CREATE_SCHEMA)
        self.drop_schema = c(DROP_SCHEMA)
        self.record_version = c("INSERT INTO {version} (version) VALUES (%(version)s)")
        self.recorded_versions = c("SELECT array_agg(version) FROM {version}")
        self.install_lock = b"SELECT pg_advisory_xact_lock(hashtext(%(key)s))"
        self.table_exists = b"SELECT to_regclass(%(name)s) IS NOT NULL"
        self.jobs_sequence = c("SELECT pg_get_serial_sequence({jobs_regclass}, 'id')")
        self.listen = c("LISTEN {channel_ident}")
        # The cast fails (relation does not exist) once the jobs table is dropped.
        self.notify = c("SELECT pg_notify({channel}, %(payload)s), {jobs_regclass}::regclass")
        # producers
        self.enqueue = c(dml.ENQUEUE)
        self.enqueue_skip_duplicates = c(dml.ENQUEUE_SKIP_DUPLICATES)
        self.jobs_by_dedupe_key = c(dml.JOBS_BY_DEDUPE_KEY)
        self.reserve_ids = c(dml.RESERVE_IDS)
        self.copy_jobs = c(dml.COPY_JOBS)
        # workers
        self.dequeue = c(dml.DEQUEUE)
        self.dequeue_async_commit = c(dml.DEQUEUE_ASYNC_COMMIT)
        self.next_due = c(dml.NEXT_DUE)
        self.ensure_limit_rows = c(dml.ENSURE_LIMIT_ROWS)
        self.needs_statistics = c(dml.NEEDS_STATISTICS)
        self.analyze_jobs = c("ANALYZE {jobs}")
        self.lock_limit_row = c(dml.LOCK_LIMIT_ROW)
        self.count_picked = c(dml.COUNT_PICKED)
        self.set_tokens = c(dml.SET_TOKENS)
        self.complete = c(dml.COMPLETE)
        self.heartbeat = c(dml.HEARTBEAT)
        self.mark_started = c(dml.MARK_STARTED)
        self.release = c(dml.RELEASE)
        self.recorded = c(dml.RECORDED)
        # control and inspection
        self.cancel = c(dml.CANCEL)
        self.requeue = c(dml.REQUEUE)
        self.queue_size = c(dml.QUEUE_SIZE)
        self.clear_queue = c(dml.CLEAR_QUEUE)
        self.history = c(dml.HISTORY)
        self.results = c(dml.RESULTS)
        self.known_ids = c(dml.KNOWN_IDS)
        self.get_jobs = c(dml.GET_JOBS)
        self.prune_log = c(dml.PRUNE_LOG)
        # schedules
        self.schedule_now = c(sched.SCHEDULE_NOW)
        self.declare_new = c(sched.DECLARE_NEW)
        self.lock_declared = c(sched.LOCK_DECLARED)
        self.redeclare = c(sched.REDECLARE)
        self.refresh_schedules = c(sched.REFRESH_SCHEDULES)
        self.lock_schedule = c(sched.LOCK_SCHEDULE)
        self.enqueue_ticks = c(sched.ENQUEUE_TICKS)
        self.list_schedules = c(sched.LIST_SCHEDULES)
        self.pause_schedule = c(sched.PAUSE_SCHEDULE)
        self.resume_schedule = c(sched.RESUME_SCHEDULE)
        self.lock_one_schedule = c(sched.LOCK_ONE)
        self.run_schedule = c(sched.RUN_SCHEDULE)
        self.remove_schedule = c(sched.REMOVE_SCHEDULE)

    def compose(self, template: LiteralString) -> bytes:
        """``template`` with this queue's identifiers filled in."""
        return sql.SQL(template).format(**self._idents).as_bytes(None)

    def script(self, template: LiteralString, **literals: object) -> str:
        """``template`` as SQL text to run elsewhere: identifiers filled in, and values
        given here written as literals."""
        values = {k: sql.Literal(v) for k, v in literals.items()}
        return sql.SQL(template).format(**self._idents, **values).as_string(None)


@functools.lru_cache(maxsize=64)
def statements(settings: Settings) -> Statements:
    """The (cached) statements for ``settings``."""
    return Statements(settings)


def migration_path(installed: int) -> list[int]:
    """The versions to apply, in order, to bring a schema at ``installed`` to the current
    one; SchemaVersionError if there is no such path."""
    if installed < 1:
        raise SchemaVersionError(
            f"schema version {installed} was never released (versions start at 1): the "
            "version table was edited or damaged"
        )
    if installed > SCHEMA_VERSION:
        raise SchemaVersionError(
            f"the queue schema is v{installed}, newer than this pgqueue-sync (v{SCHEMA_VERSION})"
            ": upgrade pgqueue-sync"
        )
    path = list(range(installed + 1, SCHEMA_VERSION + 1))
    missing = [v for v in path if v not in MIGRATIONS]
    if missing:
        raise SchemaVersionError(f"no migration to schema v{missing[0]} in this pgqueue-sync")
    return path


def install_lock_key(settings: Settings) -> str:
    """The advisory lock key of installs and upgrades: one per PostgreSQL schema, whatever
    the prefix, since queues of one schema share its CREATE SCHEMA."""
    return f"pgqueue-sync:{settings.schema}"


def _header(settings: Settings, what: str) -> str:
    prefix = f", prefix {settings.prefix!r}" if settings.prefix else ""
    return (
        f"-- pgqueue-sync: {what}, for the queue in schema {settings.schema!r}{prefix}.\n"
        "-- Run it in one transaction (migration tools do): its first statement takes the\n"
        "-- lock that `pgq-sync install` and `pgq-sync upgrade` take.\n"
    )


def install_script(settings: Settings) -> str:
    """The SQL that installs the current schema for ``settings``, the version row included
    (what ``pgq-sync sql install`` prints), for migration tools such as Alembic or Flyway."""
    s = statements(settings)
    return (
        _header(settings, f"install schema v{SCHEMA_VERSION}")
        + s.script(LOCK, lock_key=install_lock_key(settings))
        + "\n"
        + s.script(DDL)
        + "\n"
        + s.script(RECORD_VERSION, version_number=SCHEMA_VERSION)
        + "\n"
    )


def upgrade_script(settings: Settings, installed: int) -> str:
    """The SQL that upgrades a schema at version ``installed`` to the current one, each
    step followed by its version row (what ``pgq-sync sql upgrade --from N`` prints); only
    the header when there is nothing to do."""
    s = statements(settings)
    path = migration_path(installed)
    if not path:
        return _header(settings, f"nothing to upgrade, schema v{installed} is current")
    text = _header(settings, f"upgrade schema v{installed} to v{SCHEMA_VERSION}")
    text += s.script(LOCK, lock_key=install_lock_key(settings)) + "\n"
    for version in path:
        text += f"\n-- v{version - 1} -> v{version}\n"
        text += s.script(MIGRATIONS[version]).strip() + "\n"
        text += s.script(RECORD_VERSION, version_number=version) + "\n"
    return text
