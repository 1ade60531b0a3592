-- Migrations: "-- name: vN" upgrades the schema from version N-1 to N. Each runs in the
-- transaction that records it. ADD COLUMN with a constant default rewrites no rows.

-- name: v2
-- v2: lost, rescued and started on jobs (workers lost while running).
ALTER TABLE {jobs}
    ADD COLUMN lost integer NOT NULL DEFAULT 0,
    ADD COLUMN rescued integer NOT NULL DEFAULT 0,
    ADD COLUMN started timestamptz;
