-- The operator's statements: what the command line and a dashboard read, and the repairs
-- (requeue, pause, purge) that change the queue on purpose.
--
-- Each statement starts with "-- name: NAME"; a name starting with "_" is a fragment that
-- other statements include as {_NAME}. {jobs}, {log}, ... are the queue's identifiers and
-- {now} the database's now() unless a test clock passes a time; %(name)s are parameters.
-- Each listing reads one index in order and stops after a page (keyset pagination), so a
-- page costs the same at the first row as at the millionth.

-- name: _live_counts
-- Live jobs of one entrypoint by state, and its oldest due job (an aggregate select list
-- over the queue table grouped by entrypoint: status and queue_metrics).
count(*) FILTER (WHERE status = 'queued' AND execute_after <= {now}) AS queued,
count(*) FILTER (WHERE status = 'queued' AND execute_after > {now}) AS deferred,
count(*) FILTER (WHERE status = 'picked') AS picked,
count(*) FILTER (WHERE status = 'failed') AS failed,
min(execute_after) FILTER (WHERE status = 'queued' AND execute_after <= {now}) AS oldest_due

-- name: status
-- Per entrypoint: live jobs by state (one pass over the queue table), outcomes and arrivals
-- of the last minute (the log's index on created), paused or not. Entrypoints served by a
-- live worker are listed even with no job.
WITH live AS (
    SELECT entrypoint,
           {_live_counts},
           count(*) FILTER (WHERE created >= {now} - interval '1 minute') AS arrived
    FROM {jobs} GROUP BY entrypoint
), recent AS (
    SELECT entrypoint,
           count(*) AS done,
           count(*) FILTER (WHERE status IN ('exception', 'failed')) AS failures,
           -- A failed job is still in the queue table, counted there.
           count(*) FILTER (WHERE enqueued >= {now} - interval '1 minute'
                            AND status <> 'failed') AS arrived,
           avg(greatest(0, extract(epoch FROM created - duration - due)))
               FILTER (WHERE due IS NOT NULL AND duration IS NOT NULL) AS latency
    FROM {log} WHERE created >= {now} - interval '1 minute'
    GROUP BY entrypoint
), names AS (
    SELECT entrypoint FROM live
    UNION SELECT entrypoint FROM recent
    UNION SELECT entrypoint FROM {paused}
    UNION SELECT unnest(entrypoints) FROM {workers} WHERE heartbeat >= {now} - lost_after
)
SELECT n.entrypoint,
       COALESCE(l.queued, 0) AS queued,
       COALESCE(l.deferred, 0) AS deferred,
       COALESCE(l.picked, 0) AS picked,
       COALESCE(l.failed, 0) AS failed,
       COALESCE(r.done, 0) AS done_last_minute,
       COALESCE(r.failures, 0) AS failed_last_minute,
       COALESCE(l.arrived, 0) + COALESCE(r.arrived, 0) AS enqueued_last_minute,
       extract(epoch FROM {now} - l.oldest_due)::float8 AS oldest_waiting_seconds,
       r.latency::float8 AS pickup_latency_seconds,
       p.entrypoint IS NOT NULL AS paused,
       p.since AS paused_since
FROM names n
LEFT JOIN live l USING (entrypoint)
LEFT JOIN recent r USING (entrypoint)
LEFT JOIN {paused} p USING (entrypoint)
ORDER BY n.entrypoint

-- name: queue_metrics
-- What a metrics scrape reads, in one statement: live jobs by entrypoint and state and the
-- oldest due job's age (one pass over the queue table, no other table read), and the
-- workers registry's live and lost rows (a handful). The workers' counts come with every
-- row, and alone (entrypoint NULL) when the queue is empty.
WITH live AS (
    SELECT entrypoint,
           {_live_counts}
    FROM {jobs} GROUP BY entrypoint
), registry AS (
    SELECT count(*) FILTER (WHERE heartbeat >= {now} - lost_after) AS workers_live,
           count(*) FILTER (WHERE heartbeat < {now} - lost_after) AS workers_lost
    FROM {workers}
)
SELECT l.entrypoint, l.queued, l.deferred, l.picked, l.failed,
       greatest(0, extract(epoch FROM {now} - l.oldest_due))::float8 AS oldest_waiting_seconds,
       r.workers_live, r.workers_lost
FROM registry r LEFT JOIN live l ON true
ORDER BY l.entrypoint

-- name: workers
SELECT id, host, pid, started AS started_at, heartbeat AS heartbeat_at, entrypoints, threads,
       busy, jobs_done, jobs_failed, version, heartbeat < {now} - lost_after AS lost,
       greatest(0, extract(epoch FROM {now} - heartbeat))::float8 AS heartbeat_age_seconds,
       options
FROM {workers} ORDER BY started, id

-- name: _queue_page
-- Listings, newest first, a page after the cursor (the last row's cursor of the previous
-- page). Jobs in the queue table by id; outcomes in the log by log row.
SELECT j.id, j.entrypoint, j.status::text AS status, j.priority, j.attempts,
       j.created AS enqueued_at, j.execute_after AS due_at, j.updated AS updated_at,
       j.worker_id, NULL::float8 AS duration, j.last_error AS error, j.dedupe_key,
       j.id AS cursor
FROM {jobs} j
WHERE j.id < COALESCE(%(cursor)s::bigint, 9223372036854775807)
  AND (%(entrypoint)s::text IS NULL OR j.entrypoint = %(entrypoint)s::text)

-- name: _queue_order
ORDER BY j.id DESC LIMIT %(limit)s

-- name: list_live
{_queue_page}
{_queue_order}

-- name: list_queued
{_queue_page}
  AND j.status = 'queued'
{_queue_order}

-- name: list_picked
{_queue_page}
  AND j.status = 'picked'
{_queue_order}

-- name: list_failed
{_queue_page}
  AND j.status = 'failed'
{_queue_order}

-- name: _log_page
SELECT l.job_id AS id, l.entrypoint, l.status::text AS status, l.priority, l.attempts,
       l.enqueued AS enqueued_at, l.due AS due_at, l.created AS updated_at, l.worker_id,
       extract(epoch FROM l.duration)::float8 AS duration, l.traceback AS error,
       NULL::text AS dedupe_key, l.id AS cursor
FROM {log} l
WHERE l.id < COALESCE(%(cursor)s::bigint, 9223372036854775807)
  AND (%(entrypoint)s::text IS NULL OR l.entrypoint = %(entrypoint)s::text)

-- name: _log_order
ORDER BY l.id DESC LIMIT %(limit)s

-- name: list_successful
{_log_page}
  AND l.status = 'successful'
{_log_order}

-- name: list_problems
-- Outcomes other than successful (exception, canceled): the partial index of problems
-- serves this (its predicate is written out for the planner).
{_log_page}
  AND l.status <> 'successful' AND l.status::text = %(status)s::text
{_log_order}

-- name: _requeue_set
SET status = 'queued', attempts = 0, worker_id = NULL, cancel_requested = false,
        execute_after = {now}, updated = {now}, lost = 0, rescued = 0, started = NULL

-- name: requeue_ids
-- Failed jobs among the ids go back to the queue; the others are reported: still live
-- (queued or running: nothing to do), finished (in the log only), or unknown.
WITH requeued AS (
    UPDATE {jobs}
    {_requeue_set}
    WHERE id = ANY(%(ids)s::bigint[]) AND status = 'failed'
    RETURNING id
), live AS (
    SELECT id FROM {jobs} WHERE id = ANY(%(ids)s::bigint[]) AND status <> 'failed'
), logged AS (
    SELECT DISTINCT job_id FROM {log} WHERE job_id = ANY(%(ids)s::bigint[])
)
SELECT
    (SELECT array_agg(id) FROM requeued) AS requeued,
    (SELECT array_agg(id) FROM live) AS live,
    (SELECT array_agg(job_id) FROM logged) AS logged,
    (SELECT pg_notify({channel}, {requeue_event}) FROM requeued HAVING count(*) > 0) AS notified

-- name: requeue_all_failed
WITH requeued AS (
    UPDATE {jobs}
    {_requeue_set}
    WHERE status = 'failed'
      AND (%(entrypoint)s::text IS NULL OR entrypoint = %(entrypoint)s::text)
    RETURNING id
)
SELECT
    (SELECT array_agg(id) FROM requeued) AS requeued,
    (SELECT pg_notify({channel}, {requeue_event}) FROM requeued HAVING count(*) > 0) AS notified

-- name: pause
-- The NOTIFY only hints: a worker that hears it reads the paused table itself.
WITH added AS (
    INSERT INTO {paused} (entrypoint, since, reason)
    SELECT e, {now}, %(reason)s FROM unnest(%(entrypoints)s::text[]) AS e
    ON CONFLICT (entrypoint) DO NOTHING
    RETURNING entrypoint
)
SELECT
    (SELECT array_agg(entrypoint ORDER BY entrypoint) FROM added) AS paused,
    (SELECT pg_notify({channel}, json_build_object(
                'type', {pause_type}, 'entrypoints', array_agg(entrypoint))::text)
     FROM added HAVING count(*) > 0) AS notified

-- name: resume
WITH removed AS (
    DELETE FROM {paused} WHERE entrypoint = ANY(%(entrypoints)s::text[])
    RETURNING entrypoint
)
SELECT
    (SELECT array_agg(entrypoint ORDER BY entrypoint) FROM removed) AS resumed,
    (SELECT pg_notify({channel}, json_build_object(
                'type', {resume_type}, 'entrypoints', array_agg(entrypoint))::text)
     FROM removed HAVING count(*) > 0) AS notified

-- name: paused
SELECT entrypoint, since, reason FROM {paused} ORDER BY entrypoint

-- name: purge
DELETE FROM {jobs}
WHERE status::text = ANY(%(statuses)s::text[])
  AND (%(entrypoint)s::text IS NULL OR entrypoint = %(entrypoint)s::text)

-- name: _rates_since
-- The first minute rates() reports (minutes are binned from a whole minute in UTC).
(date_bin('1 minute', {now}, '2000-01-01 00:00:00+00')
 - (%(minutes)s::int - 1) * interval '1 minute')

-- name: rates
-- Per minute of the last %(minutes)s (the current minute last, partial), oldest first: jobs
-- enqueued, outcomes written, failures among them (exception, failed), and the mean pick-up
-- latency (due to handler start) of those outcomes; of one entrypoint or all. Every minute
-- has a row, zeros included. Arrivals are counted as status counts them: a job still in the
-- queue table by its created (one pass over that table, which has no index on created), a
-- finished one by its log row's enqueued, a failed one once (in the queue table). The log
-- is read through its index on created. Each count is a plain aggregate of its own, so that
-- PostgreSQL can run it in parallel.
WITH outcomes AS (
    SELECT date_bin('1 minute', l.created, '2000-01-01 00:00:00+00') AS minute,
           count(*) AS done,
           count(*) FILTER (WHERE l.status IN ('exception', 'failed')) AS failures,
           avg(greatest(0, extract(epoch FROM l.created - l.duration - l.due)))
               FILTER (WHERE l.due IS NOT NULL AND l.duration IS NOT NULL) AS latency
    FROM {log} l
    WHERE l.created >= {_rates_since}
      AND (%(entrypoint)s::text IS NULL OR l.entrypoint = %(entrypoint)s::text)
    GROUP BY 1
), logged_arrivals AS (
    SELECT date_bin('1 minute', l.enqueued, '2000-01-01 00:00:00+00') AS minute,
           count(*) AS arrived
    FROM {log} l
    WHERE l.created >= {_rates_since} AND l.enqueued >= {_rates_since}
      AND l.status <> 'failed'
      AND (%(entrypoint)s::text IS NULL OR l.entrypoint = %(entrypoint)s::text)
    GROUP BY 1
), queued_arrivals AS (
    SELECT date_bin('1 minute', j.created, '2000-01-01 00:00:00+00') AS minute,
           count(*) AS arrived
    FROM {jobs} j
    WHERE j.created >= {_rates_since}
      AND (%(entrypoint)s::text IS NULL OR j.entrypoint = %(entrypoint)s::text)
    GROUP BY 1
)
SELECT m.minute,
       COALESCE(q.arrived, 0) + COALESCE(la.arrived, 0) AS enqueued,
       COALESCE(o.done, 0) AS done,
       COALESCE(o.failures, 0) AS failed,
       o.latency::float8 AS pickup_latency_seconds
FROM generate_series({_rates_since},
                     date_bin('1 minute', {now}, '2000-01-01 00:00:00+00'),
                     interval '1 minute') AS m(minute)
LEFT JOIN queued_arrivals q USING (minute)
LEFT JOIN logged_arrivals la USING (minute)
LEFT JOIN outcomes o USING (minute)
ORDER BY m.minute
