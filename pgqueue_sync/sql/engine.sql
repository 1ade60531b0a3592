-- The worker engine's statements: claims, outcomes, heartbeats, releases.
--
-- Each statement starts with "-- name: NAME"; a name starting with "_" is a fragment that
-- other statements include as {_NAME}. {jobs}, {log}, ... are the queue's identifiers and
-- {now} the database's now() unless a test clock passes a time; %(name)s are parameters.

-- name: fetch_session
-- The fetch connection's session. Claims commit without waiting for their WAL flush: a
-- claim lost in a server crash only puts its jobs back in the queue (at-least-once holds),
-- and the next outcome written, committed synchronously, flushes the WAL past it anyway.
-- The claim, prepared after a few runs, keeps one generic plan (the partial index walked in
-- order): planning it anew for every claim cost more than running it, and the planner's
-- probes of the index ends grow with the backlog. Claimed timestamps are read in UTC:
-- psycopg builds a datetime in UTC four times faster than in a named zone (Etc/UTC
-- included), and each claimed job carries three. Through a transaction pooler a session
-- SET would stay on a shared server connection, for other clients: it is not sent there.
SET synchronous_commit = off;
SET plan_cache_mode = force_generic_plan;
SET TimeZone = 'UTC'

-- name: analyze_jobs
ANALYZE {jobs}

-- name: _open_entrypoints
-- The entrypoints asked for, less the paused ones: a paused entrypoint is not claimed by
-- any worker, whatever the worker believes (the table is the truth; a NOTIFY only hints).
-- One probe of the paused table's primary key per entrypoint, whatever the backlog.
ARRAY(
        SELECT e FROM unnest(%(entrypoints)s::text[]) AS e
        WHERE NOT EXISTS (SELECT FROM {paused} p WHERE p.entrypoint = e)
    )

-- name: _claim_head
-- Claim up to %(limit)s jobs: picked ones whose heartbeat is older than retry_timer (their
-- worker is dead or frozen), then queued ones that are due, highest priority first, then
-- oldest. %(fresh_limit)s caps the queued ones (a concurrency or rate budget). Both scans
-- skip rows that another worker has locked.
-- A stale row (still 'picked' before the update) is "rescued" from a worker presumed dead;
-- if the handler of the attempt it lost had recorded that it started (mark_started, only
-- done for rescued jobs), that worker was "lost" while running it. Paused entrypoints are
-- left out (see _open_entrypoints).
WITH open AS (
    SELECT {_open_entrypoints} AS entrypoints
), stale AS (
    SELECT id FROM {jobs}
    WHERE status = 'picked'
      AND %(retry_timer)s::interval IS NOT NULL
      AND entrypoint = ANY((SELECT entrypoints FROM open)::text[])
      AND heartbeat < {now} - %(retry_timer)s::interval
    ORDER BY heartbeat
    LIMIT %(limit)s
    FOR UPDATE SKIP LOCKED
), fresh AS (
    SELECT id FROM {jobs}
    WHERE status = 'queued'
      AND entrypoint = ANY((SELECT entrypoints FROM open)::text[])
      AND execute_after <= {now}
    ORDER BY priority DESC, execute_after, id
    LIMIT %(fresh_limit)s
    FOR UPDATE SKIP LOCKED
), chosen AS (
    SELECT id FROM (SELECT id FROM stale UNION ALL SELECT id FROM fresh) c LIMIT %(limit)s
)
UPDATE {jobs} AS j
SET status = 'picked', worker_id = %(worker_id)s, attempts = j.attempts + 1,
    heartbeat = {now}, updated = {now},
    rescued = j.rescued + (j.status = 'picked')::integer,
    lost = j.lost + (j.status = 'picked' AND j.started IS NOT NULL)::integer,
    started = NULL

-- name: _claim_tail
-- What the update has just set (status, heartbeat, worker, started) is not read back: the
-- worker knows it (Job.from_claim), and every column decoded costs it CPU per job. For the
-- same reason the claim's time (updated) comes on one row only and a due time equal to the
-- creation comes as NULL (claim_columns: _CLAIM_EXPRESSIONS in sql/__init__.py).
WHERE j.id = chosen.id
RETURNING {claim_columns}

-- name: dequeue
{_claim_head}
FROM chosen
{_claim_tail}

-- name: dequeue_async_commit
-- The claim of a fetch connection that keeps no session settings (through a transaction
-- pooler): it turns synchronous_commit off for its own transaction, from within the same
-- statement. A SET LOCAL would cost three more round trips (BEGIN, SET, COMMIT).
{_claim_head}
FROM chosen, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit
{_claim_tail}

-- name: next_due
SELECT extract(epoch FROM min(execute_after) - {now})::float8 FROM {jobs}
WHERE status = 'queued' AND entrypoint = ANY({_open_entrypoints})

-- name: needs_statistics
-- Never analyzed (reltuples is -1 until the first ANALYZE or VACUUM) yet holding rows.
SELECT reltuples < 0 AND EXISTS (SELECT FROM {jobs})
FROM pg_class WHERE oid = {jobs_regclass}::regclass

-- name: ensure_limit_rows
-- Entrypoints with a global limit: claimers lock the entrypoint's row first (the count of
-- running jobs is then exact), in one transaction with the claim.
-- A new bucket starts full (refilled long ago).
INSERT INTO {limits} (entrypoint, tokens, refilled)
SELECT e, 0, timestamptz '2000-01-01 00:00+00' FROM unnest(%(entrypoints)s::text[]) AS e
ON CONFLICT (entrypoint) DO NOTHING

-- name: lock_limit_row
SELECT tokens, extract(epoch FROM {now} - refilled)::float8 AS elapsed
FROM {limits} WHERE entrypoint = %(entrypoint)s
FOR UPDATE

-- name: count_picked
SELECT count(*) FROM {jobs} WHERE entrypoint = %(entrypoint)s AND status = 'picked'

-- name: set_tokens
UPDATE {limits} SET tokens = %(tokens)s, refilled = {now} WHERE entrypoint = %(entrypoint)s

-- name: complete
-- Outcomes, fenced: only the worker holding the current attempt may record one. Rows are
-- locked in id order, so concurrent completions cannot deadlock. Finished jobs leave the
-- table for the log; failed ones (retries exhausted) stay, for inspection and requeue;
-- retried ones go back to queued after their backoff. One NOTIFY tells waiters what finished
-- (on the done channel: a worker without concurrency limits does not listen to it).
-- Each step joins the jobs table to ``owned`` by primary key and carries the outcome along
-- in RETURNING: no step joins two CTEs (whose row counts the planner cannot know), so the
-- cost stays linear in the number of outcomes however many a flush writes.
WITH done AS (
    SELECT * FROM unnest(
        %(ids)s::bigint[], %(attempts)s::integer[], %(statuses)s::text[],
        %(durations)s::float8[], %(tracebacks)s::text[], %(results)s::bytea[],
        %(values)s::jsonb[], %(delays)s::float8[]
    ) AS d(id, attempt, status, duration, traceback, result, value, delay)
), owned AS (
    SELECT d.* FROM {jobs} j JOIN done d ON d.id = j.id AND d.attempt = j.attempts
    WHERE j.worker_id = %(worker_id)s AND j.status = 'picked'
    ORDER BY j.id
    FOR UPDATE OF j
), removed AS (
    DELETE FROM {jobs} j USING owned o
    WHERE j.id = o.id AND o.status NOT IN ('queued', 'failed')
    RETURNING j.id, j.entrypoint, j.priority, j.attempts, j.created, j.headers,
              o.status, o.duration, o.traceback, o.result, o.value, j.execute_after
), failed AS (
    UPDATE {jobs} j
    SET status = 'failed', worker_id = NULL, last_error = o.traceback, updated = {now}
    FROM owned o
    WHERE j.id = o.id AND o.status = 'failed'
    RETURNING j.id, j.entrypoint, j.priority, j.attempts, j.created, j.headers,
              o.status, o.duration, o.traceback, o.result, o.value, j.execute_after
), retried AS (
    UPDATE {jobs} j
    SET status = 'queued', worker_id = NULL, last_error = o.traceback, updated = {now},
        execute_after = {now} + make_interval(secs => o.delay)
    FROM owned o
    WHERE j.id = o.id AND o.status = 'queued'
    RETURNING j.id
), logged AS (
    INSERT INTO {log} (job_id, entrypoint, status, priority, attempts, worker_id, duration,
                       traceback, result, result_json, headers, enqueued, created, due)
    SELECT r.id, r.entrypoint, r.status::{status}, r.priority, r.attempts, %(worker_id)s,
           make_interval(secs => r.duration), r.traceback, r.result, r.value, r.headers,
           r.created, {now}, r.execute_after
    FROM (SELECT * FROM removed UNION ALL SELECT * FROM failed) r
    RETURNING job_id, entrypoint
)
SELECT
    (SELECT array_agg(job_id) FROM logged) AS finished,
    (SELECT array_agg(id) FROM retried) AS retried,
    (SELECT pg_notify({done_channel}, json_build_object(
                'type', {done_type},
                'ids', CASE WHEN count(*) <= 100 THEN array_agg(job_id) END,
                'entrypoints', CASE WHEN count(DISTINCT entrypoint) <= 20
                                    THEN array_agg(DISTINCT entrypoint) END)::text)
     FROM logged HAVING count(*) > 0) AS notified_done,
    (SELECT pg_notify({channel}, {requeue_event}) FROM retried HAVING count(*) > 0)
        AS notified_requeue

-- name: mark_started
-- A handler of a rescued job is about to start: recorded first, fenced like an outcome, so
-- that if this worker dies too, the next claim counts it as lost.
UPDATE {jobs} SET started = {now}
WHERE id = %(id)s AND attempts = %(attempt)s AND worker_id = %(worker_id)s
  AND status = 'picked'
RETURNING id

-- name: heartbeat
-- Refresh the heartbeat of held jobs; report which are still held and which were cancelled.
UPDATE {jobs} SET heartbeat = {now}
WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s AND status = 'picked'
RETURNING id, cancel_requested

-- name: release
-- Give held jobs back at once; unstarted ones do not use up an attempt.
WITH released AS (
    UPDATE {jobs} SET status = 'queued', worker_id = NULL, updated = {now}, started = NULL,
        attempts = attempts - CASE WHEN id = ANY(%(unstarted)s::bigint[]) THEN 1 ELSE 0 END
    WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s AND status = 'picked'
    RETURNING id
)
SELECT
    (SELECT array_agg(id) FROM released) AS released,
    (SELECT pg_notify({channel}, {requeue_event}) FROM released HAVING count(*) > 0) AS notified

-- name: recorded
-- After a lost connection: which of these outcomes did this worker write after all?
SELECT l.job_id FROM {log} l
JOIN unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS o(id, attempt)
  ON o.id = l.job_id AND o.attempt = l.attempts
WHERE l.worker_id = %(worker_id)s

-- name: worker_beat
-- The workers registry: a worker's row, written when it starts and with each heartbeat (an
-- upsert: a row deleted meanwhile comes back); rows of workers lost long ago are forgotten.
-- Returns which of the worker's entrypoints are paused.
WITH beat AS (
    INSERT INTO {workers} AS w (id, host, pid, started, heartbeat, entrypoints, threads,
                                busy, jobs_done, jobs_failed, version, lost_after, options)
    VALUES (%(id)s, %(host)s, %(pid)s, {now}, {now}, %(entrypoints)s::text[], %(threads)s,
            %(busy)s, %(done)s, %(failed)s, %(version)s, %(lost_after)s::interval,
            %(options)s::jsonb)
    ON CONFLICT (id) DO UPDATE
    SET heartbeat = EXCLUDED.heartbeat, threads = EXCLUDED.threads, busy = EXCLUDED.busy,
        jobs_done = EXCLUDED.jobs_done, jobs_failed = EXCLUDED.jobs_failed
    RETURNING w.id
), forgotten AS (
    DELETE FROM {workers}
    WHERE id <> %(id)s AND heartbeat < {now} - %(forget_after)s::interval
    RETURNING id
)
SELECT ARRAY(SELECT entrypoint FROM {paused} WHERE entrypoint = ANY(%(entrypoints)s::text[]))

-- name: worker_paused
-- Which of these entrypoints are paused (a pause or resume NOTIFY only hints at it).
SELECT ARRAY(SELECT entrypoint FROM {paused} WHERE entrypoint = ANY(%(entrypoints)s::text[]))

-- name: worker_gone
-- A clean stop: the worker's row is removed.
DELETE FROM {workers} WHERE id = %(id)s
