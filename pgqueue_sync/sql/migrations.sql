-- Migrations: "-- name: vN" upgrades the schema from version N-1 to N. Each runs in the
-- transaction that records it. ADD COLUMN with a constant default rewrites no rows.

-- name: v2
-- v2: lost, rescued and started on jobs (workers lost while running).
ALTER TABLE {jobs}
    ADD COLUMN lost integer NOT NULL DEFAULT 0,
    ADD COLUMN rescued integer NOT NULL DEFAULT 0,
    ADD COLUMN started timestamptz;

-- name: v3
-- v3: the workers registry, paused entrypoints, due on log rows, indexes for listings.
ALTER TABLE {log} ADD COLUMN due timestamptz;

-- Listings of failed jobs (in the queue and in the log), newest first: the rows an
-- operator looks for are few among many, and partial indexes cost a successful job nothing.
CREATE INDEX {failed_idx} ON {jobs} (id) WHERE status = 'failed';
CREATE INDEX {log_problem_idx} ON {log} (id) WHERE status <> 'successful';

-- One row per running worker, written when it starts and with each heartbeat, removed when
-- it stops cleanly. A row whose heartbeat is older than lost_after is a lost worker.
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

-- Paused entrypoints: no worker claims their jobs (the claim reads this table).
CREATE TABLE {paused} (
    entrypoint text PRIMARY KEY,
    since      timestamptz NOT NULL DEFAULT now(),
    reason     text
);

-- name: v4
-- v4: periodic jobs, one row per schedule. next_tick is the cursor: every tick before it was
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
