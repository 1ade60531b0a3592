-- The queue's statements for producers, control and inspection.
--
-- Each statement starts with "-- name: NAME"; a name starting with "_" is a fragment that
-- other statements include as {_NAME}. {jobs}, {log}, ... are the queue's identifiers and
-- {now} the database's now() unless a test clock passes a time; %(name)s are parameters.

-- name: _log_columns
-- A log row as LogEntry reads it.
l.id, l.job_id, l.entrypoint, l.status::text AS status, l.priority, l.attempts, l.worker_id,
l.duration, l.traceback, l.result, l.result_json, l.headers, l.enqueued, l.created, l.due

-- name: listen
LISTEN {channel_ident}

-- name: listen_done
-- done events have their own channel (Settings.done_channel).
LISTEN {done_channel_ident}

-- name: notify
-- The cast fails (relation does not exist) once the jobs table is dropped: a worker's
-- periodic probe notices a dropped queue this way.
SELECT pg_notify({channel}, %(payload)s), {jobs_regclass}::regclass

-- name: jobs_sequence
SELECT pg_get_serial_sequence({jobs_regclass}, 'id')

-- name: _enqueue_rows
-- The rows to insert, in the caller's order, from one array per column.
SELECT t.priority, t.entrypoint, t.payload,
           COALESCE(t.at, {now} + COALESCE(t.delay, interval '0')),
           t.dedupe_key, t.headers
    FROM unnest(
        %(priorities)s::integer[], %(entrypoints)s::text[], %(payloads)s::bytea[],
        %(ats)s::timestamptz[], %(delays)s::interval[], %(dedupe_keys)s::text[],
        %(headers)s::jsonb[]
    ) WITH ORDINALITY AS t(priority, entrypoint, payload, at, delay, dedupe_key, headers, n)
    ORDER BY t.n

-- name: enqueue
WITH ins AS (
    INSERT INTO {jobs} AS j (priority, entrypoint, payload, execute_after, dedupe_key, headers)
    
    {_enqueue_rows}

    RETURNING j.id
)
-- One array (read in binary) rather than a row per job.
SELECT COALESCE(array_agg(id ORDER BY id), '{{}}') FROM ins

-- name: enqueue_plain
-- The usual list: no due time, dedupe key or headers on any job. Three arrays rather than
-- seven: each array unnested is a function scan whose rows the server materializes (lists
-- of 1,000 were about 8 % slower through enqueue's seven, all but three of them NULLs).
WITH ins AS (
    INSERT INTO {jobs} AS j (priority, entrypoint, payload, execute_after)
    SELECT priority, entrypoint, payload, {now} FROM unnest(
        %(priorities)s::integer[], %(entrypoints)s::text[], %(payloads)s::bytea[]
    ) WITH ORDINALITY AS t(priority, entrypoint, payload, n)
    ORDER BY n
    RETURNING j.id
)
SELECT COALESCE(array_agg(ins.id ORDER BY ins.id), '{{}}') FROM ins

-- name: enqueue_one
-- One job, the most common call (a web request enqueues its job): the same row as
-- _enqueue_rows makes, from scalar parameters.
INSERT INTO {jobs} (priority, entrypoint, payload, execute_after, dedupe_key, headers)
VALUES (
    %(priority)s::integer, %(entrypoint)s::text, %(payload)s::bytea,
    COALESCE(%(at)s::timestamptz, {now} + COALESCE(%(delay)s::interval, interval '0')),
    %(dedupe_key)s::text, %(headers)s::jsonb
)
RETURNING id

-- name: enqueue_skip_duplicates
-- Rows whose dedupe_key is taken are skipped; the caller looks up the existing jobs.
WITH ins AS (
    INSERT INTO {jobs} AS j (priority, entrypoint, payload, execute_after, dedupe_key, headers)
    
    {_enqueue_rows}

    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'picked')
    DO NOTHING
    RETURNING j.id, j.dedupe_key
)
SELECT id, dedupe_key FROM ins ORDER BY id

-- name: jobs_by_dedupe_key
SELECT id, dedupe_key FROM {jobs}
WHERE dedupe_key = ANY(%(keys)s::text[]) AND status IN ('queued', 'picked')

-- name: reserve_ids
-- One row: the ids as an array (a row per id cost three times as much to send and read).
SELECT {now} AS now, array_agg(nextval(%(sequence)s::regclass)) AS ids
FROM generate_series(1, %(count)s)

-- name: copy_jobs
COPY {jobs} ({enqueue_columns})
FROM STDIN (FORMAT BINARY)

-- name: cancel
-- Queued and failed jobs are cancelled at once; running ones are asked to stop (the flag
-- reaches their worker through NOTIFY, and through its next heartbeat if it missed that).
-- Ids not targeted are reported: finished (in the log, or in the queue when the statement
-- began and gone once their row lock was free: they finished meanwhile), or unknown.
WITH target AS (
    SELECT id FROM {jobs} WHERE id = ANY(%(ids)s::bigint[]) ORDER BY id FOR UPDATE
), seen AS (
    SELECT id FROM {jobs} WHERE id = ANY(%(ids)s::bigint[])
), untargeted AS (
    SELECT i.id,
           EXISTS (SELECT FROM seen s WHERE s.id = i.id)
           OR EXISTS (SELECT FROM {log} l WHERE l.job_id = i.id) AS finished
    FROM unnest(%(ids)s::bigint[]) AS i(id)
    WHERE NOT EXISTS (SELECT FROM target t WHERE t.id = i.id)
), removed AS (
    DELETE FROM {jobs} j USING target t
    WHERE j.id = t.id AND j.status IN ('queued', 'failed')
    RETURNING j.id, j.entrypoint, j.priority, j.attempts, j.created, j.headers,
              j.execute_after
), logged AS (
    INSERT INTO {log} (job_id, entrypoint, status, priority, attempts, headers, enqueued,
                       created, due)
    SELECT id, entrypoint, 'canceled', priority, attempts, headers, created, {now},
           execute_after
    FROM removed
    RETURNING job_id
), flagged AS (
    UPDATE {jobs} j SET cancel_requested = true, updated = {now}
    FROM target t
    WHERE j.id = t.id AND j.status = 'picked'
    RETURNING j.id
)
SELECT
    (SELECT array_agg(job_id) FROM logged) AS canceled,
    (SELECT array_agg(id) FROM flagged) AS requested,
    (SELECT array_agg(id) FROM untargeted WHERE finished) AS finished,
    (SELECT array_agg(id) FROM untargeted WHERE NOT finished) AS unknown,
    (SELECT pg_notify({channel}, json_build_object('type', {cancel_type}, 'ids', array_agg(id))::text)
     FROM flagged HAVING count(*) > 0) AS notified_cancel,
    (SELECT pg_notify({done_channel}, json_build_object('type', {done_type}, 'ids', array_agg(job_id))::text)
     FROM logged HAVING count(*) > 0) AS notified_done

-- name: requeue
WITH requeued AS (
    UPDATE {jobs}
    SET status = 'queued', attempts = 0, worker_id = NULL, cancel_requested = false,
        execute_after = {now}, updated = {now}, lost = 0, rescued = 0, started = NULL
    WHERE id = ANY(%(ids)s::bigint[]) AND status = 'failed'
    RETURNING id
)
SELECT
    (SELECT array_agg(id) FROM requeued) AS requeued,
    (SELECT pg_notify({channel}, {requeue_event}) FROM requeued HAVING count(*) > 0) AS notified

-- name: queue_size
SELECT entrypoint, status::text AS status, count(*) AS count FROM {jobs}
GROUP BY entrypoint, status ORDER BY entrypoint, status

-- name: clear_queue
DELETE FROM {jobs} WHERE status = 'queued'
AND (%(entrypoints)s::text[] IS NULL OR entrypoint = ANY(%(entrypoints)s::text[]))

-- name: history
SELECT {_log_columns} FROM {log} l
WHERE (%(entrypoints)s::text[] IS NULL OR l.entrypoint = ANY(%(entrypoints)s::text[]))
  AND (%(statuses)s::text[] IS NULL OR l.status::text = ANY(%(statuses)s::text[]))
  AND (%(job_ids)s::bigint[] IS NULL OR l.job_id = ANY(%(job_ids)s::bigint[]))
  AND (%(since)s::timestamptz IS NULL OR l.created >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR l.created < %(until)s::timestamptz)
ORDER BY l.id DESC
LIMIT %(limit)s

-- name: results
-- The latest outcome of each job that has one and is not queued or running again.
SELECT DISTINCT ON (l.job_id) {_log_columns} FROM {log} l
WHERE l.job_id = ANY(%(ids)s::bigint[])
  AND NOT EXISTS (SELECT FROM {jobs} j WHERE j.id = l.job_id AND j.status IN ('queued', 'picked'))
ORDER BY l.job_id, l.id DESC

-- name: log_of_job
-- Every outcome logged for one job, oldest first.
SELECT {_log_columns} FROM {log} l WHERE l.job_id = %(id)s ORDER BY l.id

-- name: known_ids
SELECT id FROM {jobs} WHERE id = ANY(%(ids)s::bigint[])
UNION SELECT job_id FROM {log} WHERE job_id = ANY(%(ids)s::bigint[])

-- name: get_jobs
SELECT {job_columns} FROM {jobs} j WHERE j.id = ANY(%(ids)s::bigint[]) ORDER BY j.id

-- name: prune_log
DELETE FROM {log} WHERE id IN (
    SELECT id FROM {log} WHERE created < {now} - %(older_than)s::interval
    ORDER BY id LIMIT %(batch)s FOR UPDATE SKIP LOCKED
)
