-- Migrations: "-- name: vN" upgrades the schema from version N-1 to N. Each runs in the
-- transaction that records it. ADD COLUMN with a constant default rewrites no rows.

-- name: v2
-- v2: lost, rescued and started on jobs (workers lost while running).
ALTER TABLE {jobs}
    ADD COLUMN lost integer NOT NULL DEFAULT 0,
    ADD COLUMN rescued integer NOT NULL DEFAULT 0,
    ADD COLUMN started timestamptz;

-- name: v3
-- v3: reserved for the workers registry (operations); a no-op until it lands.
SELECT 1;

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
