"""Every SQL statement of pgqueue-sync, read from the ``.sql`` files of this package.

``schema.sql`` (the DDL and what installs and checks it), ``migrations.sql`` (one step per
schema version), ``queue.sql`` (producers, control, inspection), ``engine.sql`` (the
worker's claims, outcomes and heartbeats), ``admin.sql`` (the operator's reads and repairs,
and the workers registry) and ``schedules.sql`` (periodic jobs: the ticks workers claim,
what operators do) hold named statements::

    -- name: dequeue
    SELECT ...

A name starting with ``_`` is a fragment that statements of the same file include as
``{_name}``. Identifiers (schema, table prefix) come from :class:`Settings`, which validates
them, and are quoted with :class:`psycopg.sql.Identifier`; values always travel as
parameters. The files are read once; the statements of one Settings are composed once and
kept as bytes, so the hot path does no string work and psycopg can prepare them.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from importlib import resources

from psycopg import sql

from pgqueue_sync import events
from pgqueue_sync.errors import SchemaVersionError
from pgqueue_sync.models import CLAIM_COLUMNS, ENQUEUE_COLUMNS, JOB_COLUMN_TYPES
from pgqueue_sync.settings import Settings

__all__ = [
    "MIGRATIONS",
    "SCHEMA_VERSION",
    "Statements",
    "install_lock_key",
    "install_script",
    "migration_path",
    "statements",
    "upgrade_script",
]

_FILES = (
    "schema.sql",
    "migrations.sql",
    "queue.sql",
    "engine.sql",
    "admin.sql",
    "schedules.sql",
)
_NAME = re.compile(r"^-- name: (\w+)[ \t]*$", re.MULTILINE)
_FRAGMENT = re.compile(r"\{(_\w+)\}")
_COMMENT_LINE = re.compile(r"^[ \t]*--.*\n?", re.MULTILINE)


def _parse(text: str) -> dict[str, str]:
    """The named blocks of one file, their full-line comments dropped, fragments included."""
    parts = _NAME.split(text)
    blocks = {
        name: _COMMENT_LINE.sub("", body).strip()
        for name, body in zip(parts[1::2], parts[2::2], strict=True)
    }
    fragments = {name: body for name, body in blocks.items() if name.startswith("_")}

    def include(body: str) -> str:
        # A fragment may include fragments of its own.
        return _FRAGMENT.sub(lambda m: include(fragments[m.group(1)]), body)

    return {name: include(body) for name, body in blocks.items() if not name.startswith("_")}


@functools.cache
def templates() -> dict[str, str]:
    """Every named statement of the package's ``.sql`` files, by name (read once)."""
    found: dict[str, str] = {}
    for filename in _FILES:
        found.update(_parse(resources.files(__package__).joinpath(filename).read_text("utf-8")))
    return found


# version -> the statement that upgrades the schema from version - 1 to it.
MIGRATIONS: dict[int, str] = {
    int(name[1:]): body for name, body in templates().items() if re.fullmatch(r"v\d+", name)
}
# v1: the first release; each migration bumps it.
SCHEMA_VERSION = max(MIGRATIONS, default=1)

# Timestamps come from the database clock unless a test clock passes one in.
_NOW = "COALESCE(%(now)s::timestamptz, now())"


# What a claim returns instead of two of its timestamps (Job.from_claim restores them): each
# timestamp read costs the worker a datetime built in C, about 900 instructions a job.
# updated is the claim's own now() on every row, so only one row carries it; execute_after
# is NULL where it equals created (a job due when enqueued: the usual case).
_CLAIM_EXPRESSIONS = {
    "updated": "CASE WHEN j.id = (SELECT min(id) FROM chosen) THEN j.updated END",
    "execute_after": "NULLIF(j.execute_after, j.created)",
}


def _job_columns(
    names: Iterable[str] = JOB_COLUMN_TYPES, expressions: dict[str, str] | None = None
) -> sql.Composable:
    """A select list of Job's fields (all of them, or ``names``) in order, each read as the
    type Job expects (the status enum as text, which reads the same in text and binary);
    ``expressions`` gives some of them in other terms than their column."""
    expressions = expressions or {}
    columns: list[sql.Composable] = [
        sql.SQL("{}::{} AS {}").format(
            sql.SQL(expressions[name])
            if name in expressions
            else sql.SQL("j.{}").format(sql.Identifier(name)),
            sql.SQL(JOB_COLUMN_TYPES[name]),
            sql.Identifier(name),
        )
        for name in names
    ]
    return sql.SQL(", ").join(columns)


class Statements:
    """The statements for one Settings, composed once: ``statements.dequeue`` is the
    ``dequeue`` statement of the ``.sql`` files, as bytes."""

    def __init__(self, settings: Settings) -> None:
        self.settings = s = settings
        self._idents: dict[str, sql.Composable] = {
            "schema": sql.Identifier(s.schema),
            **{
                key: s.ident(key)
                for key in (
                    "jobs",
                    "log",
                    "limits",
                    "version",
                    "status",
                    "workers",
                    "paused",
                    "schedules",
                )
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
                    "failed_idx",
                    "log_problem_idx",
                )
            },
            "channel": sql.Literal(s.channel),
            "channel_ident": sql.Identifier(s.channel),
            "done_channel": sql.Literal(s.done_channel),
            "done_channel_ident": sql.Identifier(s.done_channel),
            **{key: sql.Literal(value) for key, value in events.SQL_LITERALS.items()},
            "jobs_regclass": sql.Literal(s.ident("jobs").as_string(None)),
            "now": sql.SQL(_NOW),
            "job_columns": _job_columns(),
            "claim_columns": _job_columns(CLAIM_COLUMNS, _CLAIM_EXPRESSIONS),
            "enqueue_columns": sql.SQL(", ").join([sql.Identifier(c) for c in ENQUEUE_COLUMNS]),
        }
        # Scripts (for other migration tools) fill their literals in when written.
        self._composed = {
            name: self.compose(body)
            for name, body in templates().items()
            if not name.endswith("_script")
        }
        self.migrations = {v: self._composed[f"v{v}"] for v in MIGRATIONS}

    def __getattr__(self, name: str) -> bytes:
        try:
            return self._composed[name]
        except KeyError:
            raise AttributeError(f"no SQL statement named {name!r}") from None

    def compose(self, template: str) -> bytes:
        """``template`` (SQL with ``{jobs}``-style identifiers) for this queue, as bytes."""
        return sql.SQL(template).format(**self._idents).as_bytes(None)

    def script(self, name: str, **literals: object) -> str:
        """Statement ``name`` as SQL text to run elsewhere: identifiers filled in, and the
        values given here written as literals."""
        values = {k: sql.Literal(v) for k, v in literals.items()}
        query = sql.SQL(templates()[name])
        return query.format(**self._idents, **values).as_string(None)


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
        + s.script("lock_script", lock_key=install_lock_key(settings))
        + "\n"
        + s.script("install")
        + "\n"
        + s.script("version_row_script", version_number=SCHEMA_VERSION)
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
    text += s.script("lock_script", lock_key=install_lock_key(settings)) + "\n"
    for version in path:
        text += f"\n-- v{version - 1} -> v{version}\n"
        text += s.script(f"v{version}").strip() + "\n"
        text += s.script("version_row_script", version_number=version) + "\n"
    return text
