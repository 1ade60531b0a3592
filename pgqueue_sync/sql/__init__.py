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

from pgqueue_sync.settings import Settings

from . import dml
from .ddl import CREATE_SCHEMA, DDL, DROP_SCHEMA, MIGRATIONS, SCHEMA_VERSION, UNINSTALL

if TYPE_CHECKING:
    from typing_extensions import LiteralString

__all__ = ["INSERT_EVENT", "REQUEUE_EVENT", "SCHEMA_VERSION", "Statements", "statements"]

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
            **{key: s.ident(key) for key in ("jobs", "log", "limits", "version", "status")},
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
        c = self._compose
        # schema
        self.install = c(DDL)
        self.migrations = {v: c(ddl) for v, ddl in MIGRATIONS.items()}
        self.uninstall = c(UNINSTALL)
        self.create_schema = c(CREATE_SCHEMA)
        self.drop_schema = c(DROP_SCHEMA)
        self.record_version = c("INSERT INTO {version} (version) VALUES (%(version)s)")
        self.current_version = c("SELECT max(version) FROM {version}")
        self.install_lock = b"SELECT pg_advisory_xact_lock(hashtext(%(key)s))"
        self.table_exists = b"SELECT to_regclass(%(name)s) IS NOT NULL"
        self.jobs_sequence = c("SELECT pg_get_serial_sequence({jobs_regclass}, 'id')")
        self.listen = c("LISTEN {channel_ident}")
        self.notify = c("SELECT pg_notify({channel}, %(payload)s)")
        # producers
        self.enqueue = c(dml.ENQUEUE)
        self.enqueue_skip_duplicates = c(dml.ENQUEUE_SKIP_DUPLICATES)
        self.jobs_by_dedupe_key = c(dml.JOBS_BY_DEDUPE_KEY)
        self.reserve_ids = c(dml.RESERVE_IDS)
        self.copy_jobs = c(dml.COPY_JOBS)
        # workers
        self.dequeue = c(dml.DEQUEUE)
        self.next_due = c(dml.NEXT_DUE)
        self.ensure_limit_rows = c(dml.ENSURE_LIMIT_ROWS)
        self.needs_statistics = c(dml.NEEDS_STATISTICS)
        self.analyze_jobs = c("ANALYZE {jobs}")
        self.lock_limit_row = c(dml.LOCK_LIMIT_ROW)
        self.count_picked = c(dml.COUNT_PICKED)
        self.set_tokens = c(dml.SET_TOKENS)
        self.complete = c(dml.COMPLETE)
        self.heartbeat = c(dml.HEARTBEAT)
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

    def _compose(self, template: LiteralString) -> bytes:
        return sql.SQL(template).format(**self._idents).as_bytes(None)


@functools.lru_cache(maxsize=64)
def statements(settings: Settings) -> Statements:
    """The (cached) statements for ``settings``."""
    return Statements(settings)
