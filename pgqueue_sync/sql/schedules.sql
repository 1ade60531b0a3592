-- The statements of periodic jobs: what the workers that declare schedules do (declare,
-- refresh, claim due ticks) and what operators do (list, pause, resume, run, remove).
--
-- Each statement starts with "-- name: NAME"; a name starting with "_" is a fragment that
-- other statements include as {_NAME}. {schedules}, {jobs}, ... are the queue's identifiers
-- and {now} the database's now() unless a test clock passes a time; %(name)s are parameters.

-- name: _definition
-- The definition of a schedule, in the order the worker declares it.
expression, timezone, catch_up, catch_up_limit, priority, payload

-- name: schedule_now
SELECT {now}

-- name: declare_new
-- New schedules are created with their first tick; existing ones are left to redeclare
-- (ON CONFLICT waits for a concurrent declaration of the same name to commit).
INSERT INTO {schedules} (name, {_definition}, next_tick, declared, seen, created)
SELECT d.name, d.expression, d.timezone, d.catch_up, d.catch_up_limit, d.priority, d.payload,
       d.next_tick, {now}, {now}, {now}
FROM unnest(
    %(names)s::text[], %(expressions)s::text[], %(timezones)s::text[], %(catch_ups)s::text[],
    %(limits)s::integer[], %(priorities)s::integer[], %(payloads)s::bytea[],
    %(next_ticks)s::timestamptz[]
) AS d(name, expression, timezone, catch_up, catch_up_limit, priority, payload, next_tick)
ORDER BY d.name
ON CONFLICT (name) DO NOTHING

-- name: lock_declared
SELECT name, {_definition}, next_tick, last_tick FROM {schedules}
WHERE name = ANY(%(names)s::text[]) ORDER BY name FOR UPDATE

-- name: redeclare
-- A declaration that differs from the row replaces it; next_tick is the first tick of the
-- new expression (the worker computes it, never before the old cursor or the last tick).
UPDATE {schedules}
SET expression = %(expression)s, timezone = %(timezone)s, catch_up = %(catch_up)s,
    catch_up_limit = %(catch_up_limit)s, priority = %(priority)s, payload = %(payload)s,
    next_tick = %(next_tick)s, declared = {now}
WHERE name = %(name)s

-- name: refresh_schedules
-- Workers that declare schedules say so; they learn each one's cursor (another worker may
-- have moved it, or an operator paused or resumed it). A row another worker holds (it is
-- claiming a tick) is not waited for: it is said next time, and its cursor read as it was.
WITH free AS (
    SELECT name FROM {schedules} WHERE name = ANY(%(names)s::text[])
    ORDER BY name FOR UPDATE SKIP LOCKED
), touched AS (
    UPDATE {schedules} s SET seen = {now} FROM free f WHERE s.name = f.name
    RETURNING s.name, s.next_tick, s.paused
)
SELECT s.name, COALESCE(t.next_tick, s.next_tick), COALESCE(t.paused, s.paused), {now}
FROM {schedules} s LEFT JOIN touched t ON t.name = s.name
WHERE s.name = ANY(%(names)s::text[])
ORDER BY s.name

-- name: lock_schedule
-- The claim of one schedule's due ticks: its row locked for the transaction (another worker
-- holding it is claiming them: skipped), committed durably whatever the session says, and a
-- worker frozen while holding it loses its session (and the lock) after a few seconds.
SELECT {_definition}, paused, next_tick, {now} AS now,
       set_config('synchronous_commit', 'on', true),
       set_config('idle_in_transaction_session_timeout', %(idle_timeout)s, true)
FROM {schedules} WHERE name = %(name)s
FOR UPDATE SKIP LOCKED

-- name: enqueue_ticks
-- Enqueue the ticks' jobs and move the cursor, both only if the cursor is still where the
-- claim read it (compare-and-set: with the row locked it always is; if not, nothing is done).
WITH ins AS (
    INSERT INTO {jobs} AS j (priority, entrypoint, payload, execute_after, headers)
    SELECT s.priority, s.name, s.payload, t.tick, t.headers
    FROM {schedules} s,
         unnest(%(ticks)s::timestamptz[], %(headers)s::jsonb[]) WITH ORDINALITY
             AS t(tick, headers, n)
    WHERE s.name = %(name)s AND s.next_tick = %(expected)s
    ORDER BY t.n
    RETURNING j.id, j.execute_after
), moved AS (
    UPDATE {schedules} s
    SET next_tick = %(next_tick)s,
        last_tick = COALESCE((SELECT max(execute_after) FROM ins), s.last_tick),
        last_job_id = COALESCE((SELECT max(id) FROM ins), s.last_job_id)
    WHERE s.name = %(name)s AND s.next_tick = %(expected)s
    RETURNING s.name
)
SELECT (SELECT array_agg(id ORDER BY id) FROM ins) AS ids, (SELECT count(*) FROM moved) AS moved

-- name: list_schedules
-- Each schedule with its last job's status: queued or running (in the jobs table), else
-- its latest outcome in the log.
SELECT s.name, {_definition}, s.paused, s.next_tick, s.last_tick, s.last_job_id,
       s.declared, s.seen, s.created,
       COALESCE(
           (SELECT j.status::text FROM {jobs} j WHERE j.id = s.last_job_id),
           (SELECT l.status::text FROM {log} l WHERE l.job_id = s.last_job_id
            ORDER BY l.id DESC LIMIT 1)
       ) AS last_status,
       s.seen < {now} - %(orphaned_after)s::interval AS orphaned
FROM {schedules} s
WHERE %(names)s::text[] IS NULL OR s.name = ANY(%(names)s::text[])
ORDER BY s.name

-- name: pause_schedule
UPDATE {schedules} SET paused = %(paused)s WHERE name = %(name)s RETURNING name

-- name: resume_schedule
-- Resumed: ticks that fell while it was paused are skipped; the cursor never moves back.
-- Resuming a schedule that is not paused changes nothing (its due ticks stay due).
UPDATE {schedules}
SET paused = false,
    next_tick = CASE WHEN paused THEN GREATEST(next_tick, %(next_tick)s) ELSE next_tick END
WHERE name = %(name)s
RETURNING next_tick

-- name: lock_one_schedule
SELECT expression, timezone, {now} AS now FROM {schedules} WHERE name = %(name)s FOR UPDATE

-- name: run_schedule
-- A job of the schedule now, outside its ticks (the cursor does not move).
WITH ins AS (
    INSERT INTO {jobs} (priority, entrypoint, payload, execute_after, headers)
    SELECT priority, name, payload, {now},
           jsonb_build_object('schedule', name, 'tick', NULL)
    FROM {schedules} WHERE name = %(name)s
    RETURNING id
), marked AS (
    UPDATE {schedules} SET last_job_id = (SELECT id FROM ins)
    WHERE name = %(name)s AND EXISTS (SELECT FROM ins)
    RETURNING name
)
SELECT id FROM ins

-- name: remove_schedule
DELETE FROM {schedules} WHERE name = %(name)s RETURNING name
