-- The queue's schema: its current DDL, and the statements that install, check and remove it.
--
-- Each statement starts with "-- name: NAME". {schema}, {jobs}, ... are the queue's
-- identifiers; %(name)s are parameters; {lock_key} and {version_number} are literals
-- written into scripts for other migration tools.

-- name: install
-- The current version's DDL (a fresh install). A migration's result must be the same
-- catalog (the tests compare them): new columns go at the end of their table, in the
-- same order in both.
CREATE SCHEMA IF NOT EXISTS {schema};

CREATE TYPE {status} AS ENUM (
    'queued', 'picked', 'successful', 'exception', 'canceled', 'failed'
);

CREATE TABLE {jobs} (
    id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    priority         integer NOT NULL DEFAULT 0,
    created          timestamptz NOT NULL DEFAULT now(),
    updated          timestamptz NOT NULL DEFAULT now(),
    heartbeat        timestamptz NOT NULL DEFAULT now(),
    execute_after    timestamptz NOT NULL DEFAULT now(),
    status           {status} NOT NULL DEFAULT 'queued',
    entrypoint       text NOT NULL,
    payload          bytea,
    attempts         integer NOT NULL DEFAULT 0,
    worker_id        uuid,
    dedupe_key       text,
    headers          jsonb,
    last_error       text,
    cancel_requested boolean NOT NULL DEFAULT false,
    -- v2. A job re-claimed from a worker presumed dead is "rescued"; if the handler of the
    -- attempt it lost had recorded that it "started", its worker was "lost" while running it.
    lost             integer NOT NULL DEFAULT 0,
    rescued          integer NOT NULL DEFAULT 0,
    started          timestamptz
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

-- Unique jobs: one queued-or-running job per dedupe_key.
CREATE UNIQUE INDEX {dedupe_idx} ON {jobs} (dedupe_key)
    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'picked');

-- One row per terminal outcome of a job.
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
    result_json jsonb,
    headers     jsonb,
    enqueued    timestamptz,
    created     timestamptz NOT NULL DEFAULT now(),
    -- v3. When the attempt was due (the job's execute_after): pick-up latency.
    due         timestamptz
);
CREATE INDEX {log_job_idx} ON {log} (job_id);
CREATE INDEX {log_created_idx} ON {log} (created);

-- Shared state of entrypoints with a global concurrency or rate limit: claimers of such an
-- entrypoint lock its row, so limits hold exactly across workers.
CREATE TABLE {limits} (
    entrypoint text PRIMARY KEY,
    tokens     double precision NOT NULL DEFAULT 0,
    refilled   timestamptz NOT NULL DEFAULT now()
);

-- v3. Listings of failed jobs (in the queue and in the log), newest first: the rows an
-- operator looks for are few among many, and partial indexes cost a successful job nothing.
CREATE INDEX {failed_idx} ON {jobs} (id) WHERE status = 'failed';
CREATE INDEX {log_problem_idx} ON {log} (id) WHERE status <> 'successful';

-- v3. One row per running worker, written when it starts and with each heartbeat, removed
-- when it stops cleanly. A row whose heartbeat is older than lost_after is a lost worker.
CREATE TABLE {workers} (
    id          uuid PRIMARY KEY,
    host        text NOT NULL,
    pid         integer NOT NULL,
    started     timestamptz NOT NULL DEFAULT now(),
    heartbeat   timestamptz NOT NULL DEFAULT now(),
    entrypoints text[] NOT NULL,
    threads     integer NOT NULL,
    busy        integer NOT NULL DEFAULT 0,
    jobs_done   bigint NOT NULL DEFAULT 0,
    jobs_failed bigint NOT NULL DEFAULT 0,
    version     text NOT NULL,
    lost_after  interval NOT NULL,
    options     jsonb
);

-- v3. Paused entrypoints: no worker claims their jobs (the claim reads this table).
CREATE TABLE {paused} (
    entrypoint text PRIMARY KEY,
    since      timestamptz NOT NULL DEFAULT now(),
    reason     text
);

-- Periodic jobs: one row per schedule. next_tick is the cursor: every tick before it was
-- handled (enqueued, or skipped by catch_up or a pause). Workers move it forward only,
-- under the row's lock and in the transaction that enqueues the ticks' jobs, so a tick is
-- enqueued at most once whatever the number of workers. seen: when a worker that declares
-- the schedule last said so (a schedule nobody declares any more is shown as orphaned).
CREATE TABLE {schedules} (
    name           text PRIMARY KEY,
    expression     text NOT NULL,
    timezone       text NOT NULL,
    catch_up       text NOT NULL CHECK (catch_up IN ('latest', 'none', 'all')),
    catch_up_limit integer NOT NULL CHECK (catch_up_limit > 0),
    priority       integer NOT NULL DEFAULT 0,
    payload        bytea,
    paused         boolean NOT NULL DEFAULT false,
    next_tick      timestamptz NOT NULL,
    last_tick      timestamptz,
    last_job_id    bigint,
    declared       timestamptz NOT NULL DEFAULT now(),
    seen           timestamptz NOT NULL DEFAULT now(),
    created        timestamptz NOT NULL DEFAULT now()
);

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

-- name: uninstall
DROP TRIGGER IF EXISTS {notify_trigger} ON {jobs};
DROP FUNCTION IF EXISTS {notify_fn}();
DROP TABLE IF EXISTS {jobs};
DROP TABLE IF EXISTS {log};
DROP TABLE IF EXISTS {limits};
DROP TABLE IF EXISTS {workers};
DROP TABLE IF EXISTS {paused};
DROP TABLE IF EXISTS {schedules};
DROP TABLE IF EXISTS {version};
DROP TYPE IF EXISTS {status};

-- name: create_schema
-- A schema of its own (the demo's): created only if it does not exist yet, dropped whole.
CREATE SCHEMA {schema}

-- name: drop_schema
DROP SCHEMA IF EXISTS {schema} CASCADE

-- name: drop_lock_timeout
-- Dropping a schema waits this long at most for the locks of its users.
SET lock_timeout = '10s'

-- name: lock_script
-- Installs and upgrades of queues in one PostgreSQL schema take this lock for their
-- transaction, scripts for other tools included.
SELECT pg_advisory_xact_lock(hashtext({lock_key}));

-- name: version_row_script
-- The version row, as scripts for other migration tools write it (a literal).
INSERT INTO {version} (version) VALUES ({version_number});

-- name: install_lock
SELECT pg_advisory_xact_lock(hashtext(%(key)s))

-- name: record_version
INSERT INTO {version} (version) VALUES (%(version)s)

-- name: recorded_versions
SELECT array_agg(version) FROM {version}

-- name: table_exists
SELECT to_regclass(%(name)s) IS NOT NULL
