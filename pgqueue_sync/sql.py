"""Every SQL statement of pgqueue-sync, named, with the schema DDL and its migrations.

Identifiers (schema, table prefix) come from :class:`~pgqueue_sync.settings.Settings`,
which validates them, and are quoted with :class:`psycopg.sql.Identifier`; values always
travel as parameters. Statements are composed once per Settings and kept as bytes so the hot
path does no string work and psycopg can prepare them.
"""

from __future__ import annotations

import functools
import json
from typing import TYPE_CHECKING

from psycopg import sql

from .settings import Settings

if TYPE_CHECKING:
    from typing_extensions import LiteralString

__all__ = ["SCHEMA_VERSION", "Statements", "statements"]

# Bump when the DDL changes, and add the step that gets there to MIGRATIONS.
SCHEMA_VERSION = 1

# Timestamps come from the database clock unless a test clock passes one in.
_NOW = "COALESCE(%(now)s::timestamptz, now())"

_DDL: LiteralString = """
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TYPE {status} AS ENUM (
    'queued', 'picked', 'successful', 'exception', 'canceled', 'failed'
);

CREATE TABLE {jobs} (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    priority      integer NOT NULL DEFAULT 0,
    created       timestamptz NOT NULL DEFAULT now(),
    updated       timestamptz NOT NULL DEFAULT now(),
    heartbeat     timestamptz NOT NULL DEFAULT now(),
    execute_after timestamptz NOT NULL DEFAULT now(),
    status        {status} NOT NULL DEFAULT 'queued',
    entrypoint    text NOT NULL,
    payload       bytea,
    attempts      integer NOT NULL DEFAULT 0,
    worker_id     uuid,
    dedupe_key    text,
    headers       jsonb,
    last_error    text
) WITH (
    fillfactor = 80,
    autovacuum_vacuum_scale_factor = 0.01,
    autovacuum_vacuum_threshold = 1000,
    autovacuum_analyze_scale_factor = 0.02
);

-- The claim walks this index in order and stops after batch_size rows: its cost does not
-- grow with the backlog. Only queued rows are in it.
CREATE INDEX {dequeue_idx} ON {jobs} (priority DESC, execute_after, id)
    WHERE status = 'queued';

-- Held jobs: few rows (bounded by workers x buffer). Serves the stale-heartbeat rescue and
-- per-entrypoint counts of running jobs. heartbeat is not indexed, so heartbeats are HOT.
CREATE INDEX {picked_idx} ON {jobs} (entrypoint) WHERE status = 'picked';

CREATE UNIQUE INDEX {dedupe_idx} ON {jobs} (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'picked');

CREATE TABLE {log} (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    job_id      bigint NOT NULL,
    entrypoint  text NOT NULL,
    status      {status} NOT NULL,
    priority    integer NOT NULL,
    attempts    integer NOT NULL,
    worker_id   uuid,
    duration    interval,
    traceback   text,
    result      bytea,
    headers     jsonb,
    enqueued    timestamptz,
    created     timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX {log_job_idx} ON {log} (job_id);
CREATE INDEX {log_created_idx} ON {log} (created);

CREATE TABLE {version} (
    version   integer NOT NULL,
    installed timestamptz NOT NULL DEFAULT now()
);

-- One small wake-up per INSERT statement (COPY included), never one per row.
CREATE FUNCTION {notify_fn}() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
    PERFORM pg_notify({channel}, {insert_event});
    RETURN NULL;
END
$fn$;

CREATE TRIGGER {notify_trigger} AFTER INSERT ON {jobs}
    FOR EACH STATEMENT EXECUTE FUNCTION {notify_fn}();
"""

# version -> DDL that upgrades the schema from version - 1 to version.
MIGRATIONS: dict[int, LiteralString] = {}

_JOB_RETURNING: LiteralString = (
    "j.id, j.priority, j.created, j.updated, j.heartbeat, j.execute_after, j.status, "
    "j.entrypoint, j.payload, j.attempts, j.worker_id, j.dedupe_key, j.headers"
)

INSERT_EVENT = json.dumps({"type": "insert"})
REQUEUE_EVENT = json.dumps({"type": "requeue"})


class Statements:
    """The statements for one Settings, composed once."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        s = settings
        self._idents: dict[str, sql.Composable] = {
            "schema": sql.Identifier(s.schema),
            "jobs": s.ident("jobs"),
            "log": s.ident("log"),
            "version": s.ident("version"),
            "status": s.ident("status"),
            "notify_fn": s.ident("notify_fn"),
            "notify_trigger": sql.Identifier(s.name("notify_trigger")),
            "dequeue_idx": sql.Identifier(s.name("dequeue_idx")),
            "picked_idx": sql.Identifier(s.name("picked_idx")),
            "dedupe_idx": sql.Identifier(s.name("dedupe_idx")),
            "log_job_idx": sql.Identifier(s.name("log_job_idx")),
            "log_created_idx": sql.Identifier(s.name("log_created_idx")),
            "channel": sql.Literal(s.channel),
            "channel_ident": sql.Identifier(s.channel),
            "insert_event": sql.Literal(INSERT_EVENT),
            "requeue_event": sql.Literal(REQUEUE_EVENT),
            "jobs_regclass": sql.Literal(s.ident("jobs").as_string(None)),
            "now": sql.SQL(_NOW),
            "job_cols": sql.SQL(_JOB_RETURNING),
        }

        self.install = self._compose(_DDL)
        self.migrations = {v: self._compose(ddl) for v, ddl in MIGRATIONS.items()}
        self.record_version = self._compose("INSERT INTO {version} (version) VALUES (%(version)s)")
        self.current_version = self._compose("SELECT max(version) FROM {version}")
        self.install_lock = b"SELECT pg_advisory_xact_lock(hashtext(%(key)s))"
        self.table_exists = b"SELECT to_regclass(%(name)s) IS NOT NULL"
        self.uninstall = self._compose(
            """
            DROP TRIGGER IF EXISTS {notify_trigger} ON {jobs};
            DROP FUNCTION IF EXISTS {notify_fn}();
            DROP TABLE IF EXISTS {jobs};
            DROP TABLE IF EXISTS {log};
            DROP TABLE IF EXISTS {version};
            DROP TYPE IF EXISTS {status};
            """
        )
        self.listen = self._compose("LISTEN {channel_ident}")
        self.notify = self._compose("SELECT pg_notify({channel}, %(payload)s)")
        self.jobs_sequence = self._compose("SELECT pg_get_serial_sequence({jobs_regclass}, 'id')")

        # -- producers ------------------------------------------------------------------
        self.enqueue = self._compose(
            """
            WITH ins AS (
                INSERT INTO {jobs} AS j (priority, entrypoint, payload, execute_after,
                                         dedupe_key, headers)
                SELECT t.priority, t.entrypoint, t.payload,
                       COALESCE(t.at, {now} + COALESCE(t.delay, interval '0')),
                       t.dedupe_key, t.headers
                FROM unnest(
                    %(priorities)s::integer[], %(entrypoints)s::text[], %(payloads)s::bytea[],
                    %(ats)s::timestamptz[], %(delays)s::interval[], %(dedupe_keys)s::text[],
                    %(headers)s::jsonb[]
                ) WITH ORDINALITY
                    AS t(priority, entrypoint, payload, at, delay, dedupe_key, headers, n)
                ORDER BY t.n
                RETURNING j.id
            )
            SELECT id FROM ins ORDER BY id
            """
        )
        self.reserve_ids = self._compose(
            "SELECT {now} AS now, nextval(%(sequence)s::regclass) AS id "
            "FROM generate_series(1, %(count)s)"
        )
        self.copy_jobs = self._compose(
            "COPY {jobs} (id, priority, entrypoint, payload, execute_after, dedupe_key, headers) "
            "FROM STDIN (FORMAT BINARY)"
        )

        # -- workers --------------------------------------------------------------------
        # Claim up to %(limit)s jobs: queued ones that are due, in priority then FIFO order,
        # plus picked ones whose heartbeat is older than retry_timer (their worker is dead
        # or frozen). Both scans skip rows another worker has locked.
        self.dequeue = self._compose(
            """
            WITH stale AS (
                SELECT id FROM {jobs}
                WHERE status = 'picked'
                  AND %(retry_timer)s::interval IS NOT NULL
                  AND entrypoint = ANY(%(entrypoints)s::text[])
                  AND heartbeat < {now} - %(retry_timer)s::interval
                ORDER BY heartbeat
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ), fresh AS (
                SELECT id FROM {jobs}
                WHERE status = 'queued'
                  AND entrypoint = ANY(%(entrypoints)s::text[])
                  AND execute_after <= {now}
                ORDER BY priority DESC, execute_after, id
                LIMIT %(limit)s
                FOR UPDATE SKIP LOCKED
            ), chosen AS (
                SELECT id FROM (SELECT id FROM stale UNION ALL SELECT id FROM fresh) c
                LIMIT %(limit)s
            )
            UPDATE {jobs} AS j
            SET status = 'picked', worker_id = %(worker_id)s, attempts = j.attempts + 1,
                heartbeat = {now}, updated = {now}
            FROM chosen
            WHERE j.id = chosen.id
            RETURNING {job_cols}
            """
        )
        self.next_due = self._compose(
            """
            SELECT extract(epoch FROM min(execute_after) - {now})::float8 FROM {jobs}
            WHERE status = 'queued' AND entrypoint = ANY(%(entrypoints)s::text[])
            """
        )
        # Completion, fenced: only the worker that holds the current attempt may finish a
        # job. Rows are locked in id order so that concurrent completions cannot deadlock.
        self.complete = self._compose(
            """
            WITH done AS (
                SELECT * FROM unnest(
                    %(ids)s::bigint[], %(attempts)s::integer[], %(statuses)s::text[],
                    %(durations)s::float8[], %(tracebacks)s::text[], %(results)s::bytea[]
                ) AS d(id, attempt, status, duration, traceback, result)
            ), owned AS (
                SELECT j.id FROM {jobs} j JOIN done d ON d.id = j.id AND d.attempt = j.attempts
                WHERE j.worker_id = %(worker_id)s AND j.status = 'picked'
                ORDER BY j.id
                FOR UPDATE OF j
            ), removed AS (
                DELETE FROM {jobs} j USING owned o WHERE j.id = o.id
                RETURNING j.id, j.entrypoint, j.priority, j.attempts, j.created, j.headers
            )
            INSERT INTO {log} (job_id, entrypoint, status, priority, attempts, worker_id,
                               duration, traceback, result, headers, enqueued, created)
            SELECT r.id, r.entrypoint, d.status::{status}, r.priority, r.attempts,
                   %(worker_id)s, make_interval(secs => d.duration), d.traceback, d.result,
                   r.headers, r.created, {now}
            FROM removed r JOIN done d ON d.id = r.id
            RETURNING job_id
            """
        )
        self.heartbeat = self._compose(
            """
            UPDATE {jobs} SET heartbeat = {now}
            WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s
              AND status = 'picked'
            RETURNING id
            """
        )
        # Give jobs back: unstarted ones do not consume an attempt.
        self.release = self._compose(
            """
            WITH released AS (
                UPDATE {jobs} SET status = 'queued', worker_id = NULL, updated = {now},
                    attempts = attempts - CASE WHEN id = ANY(%(unstarted)s::bigint[])
                                               THEN 1 ELSE 0 END
                WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s
                  AND status = 'picked'
                RETURNING id
            ), wake AS (
                SELECT pg_notify({channel}, {requeue_event}) WHERE EXISTS (SELECT FROM released)
            )
            SELECT id FROM released, (SELECT count(*) FROM wake) w
            """
        )

        # -- inspection -----------------------------------------------------------------
        self.queue_size = self._compose(
            """
            SELECT entrypoint, status::text AS status, count(*) AS count FROM {jobs}
            GROUP BY entrypoint, status ORDER BY entrypoint, status
            """
        )
        self.clear_queue = self._compose(
            "DELETE FROM {jobs} WHERE status = 'queued' "
            "AND (%(entrypoints)s::text[] IS NULL OR entrypoint = ANY(%(entrypoints)s::text[]))"
        )
        self.log_tail = self._compose(
            """
            SELECT id, job_id, entrypoint, status::text AS status, priority, attempts,
                   worker_id, duration, traceback, result, enqueued, created
            FROM {log}
            WHERE (%(entrypoints)s::text[] IS NULL OR entrypoint = ANY(%(entrypoints)s::text[]))
              AND (%(statuses)s::text[] IS NULL OR status::text = ANY(%(statuses)s::text[]))
              AND (%(job_ids)s::bigint[] IS NULL OR job_id = ANY(%(job_ids)s::bigint[]))
            ORDER BY id DESC
            LIMIT %(limit)s
            """
        )
        self.get_jobs = self._compose(
            "SELECT {job_cols} FROM {jobs} j WHERE j.id = ANY(%(ids)s::bigint[]) ORDER BY j.id"
        )

    def _compose(self, template: LiteralString) -> bytes:
        return sql.SQL(template).format(**self._idents).as_bytes(None)


@functools.lru_cache(maxsize=64)
def statements(settings: Settings) -> Statements:
    """The (cached) statements for ``settings``."""
    return Statements(settings)
