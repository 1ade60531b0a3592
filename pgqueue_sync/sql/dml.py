"""The queue's statements, as named templates.

``{jobs}``, ``{log}``, ... are identifiers filled in by :class:`Statements`; ``%(name)s`` are
parameters. ``{now}`` is the database's ``now()`` unless a test clock passes a time.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from typing_extensions import LiteralString

# In the order of Job's fields (the claim builds Jobs from tuples). The status goes out as
# text, which reads the same in text and binary results.
JOB_COLUMNS: LiteralString = (
    "j.id, j.priority, j.created, j.updated, j.heartbeat, j.execute_after, "
    "j.status::text AS status, "
    "j.entrypoint, j.payload, j.attempts, j.worker_id, j.dedupe_key, j.headers, "
    "j.last_error, j.cancel_requested, j.lost, j.rescued, j.started"
)

LOG_COLUMNS: LiteralString = (
    "l.id, l.job_id, l.entrypoint, l.status::text AS status, l.priority, l.attempts, "
    "l.worker_id, l.duration, l.traceback, l.result, l.result_json, l.headers, l.enqueued, "
    "l.created, l.due"
)

# -- producers -----------------------------------------------------------------------------

_ENQUEUE_ROWS: LiteralString = """
    SELECT t.priority, t.entrypoint, t.payload,
           COALESCE(t.at, {now} + COALESCE(t.delay, interval '0')),
           t.dedupe_key, t.headers
    FROM unnest(
        %(priorities)s::integer[], %(entrypoints)s::text[], %(payloads)s::bytea[],
        %(ats)s::timestamptz[], %(delays)s::interval[], %(dedupe_keys)s::text[],
        %(headers)s::jsonb[]
    ) WITH ORDINALITY AS t(priority, entrypoint, payload, at, delay, dedupe_key, headers, n)
    ORDER BY t.n
"""

ENQUEUE: LiteralString = (
    """
WITH ins AS (
    INSERT INTO {jobs} AS j (priority, entrypoint, payload, execute_after, dedupe_key, headers)
    """
    + _ENQUEUE_ROWS
    + """
    RETURNING j.id
)
SELECT id FROM ins ORDER BY id
"""
)

# Rows whose dedupe_key is taken are skipped; the caller looks up the existing jobs.
ENQUEUE_SKIP_DUPLICATES: LiteralString = (
    """
WITH ins AS (
    INSERT INTO {jobs} AS j (priority, entrypoint, payload, execute_after, dedupe_key, headers)
    """
    + _ENQUEUE_ROWS
    + """
    ON CONFLICT (dedupe_key) WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'picked')
    DO NOTHING
    RETURNING j.id, j.dedupe_key
)
SELECT id, dedupe_key FROM ins ORDER BY id
"""
)

JOBS_BY_DEDUPE_KEY: LiteralString = """
SELECT id, dedupe_key FROM {jobs}
WHERE dedupe_key = ANY(%(keys)s::text[]) AND status IN ('queued', 'picked')
"""

# One row: the ids as an array (a row per id cost three times as much to send and read).
RESERVE_IDS: LiteralString = """
SELECT {now} AS now, array_agg(nextval(%(sequence)s::regclass)) AS ids
FROM generate_series(1, %(count)s)
"""

COPY_JOBS: LiteralString = """
COPY {jobs} (id, priority, entrypoint, payload, execute_after, dedupe_key, headers)
FROM STDIN (FORMAT BINARY)
"""

# -- workers -------------------------------------------------------------------------------

# The entrypoints asked for, less the paused ones: a paused entrypoint is not claimed by
# any worker, whatever the worker believes (the table is the truth; a NOTIFY only hints).
# One probe of the paused table's primary key per entrypoint, whatever the backlog.
_OPEN_ENTRYPOINTS: LiteralString = """ARRAY(
        SELECT e FROM unnest(%(entrypoints)s::text[]) AS e
        WHERE NOT EXISTS (SELECT FROM {paused} p WHERE p.entrypoint = e)
    )"""

# Claim up to %(limit)s jobs: picked ones whose heartbeat is older than retry_timer (their
# worker is dead or frozen), then queued ones that are due, highest priority first, then
# oldest. %(fresh_limit)s caps the queued ones (a concurrency or rate budget). Both scans
# skip rows that another worker has locked.
# A stale row (still 'picked' before the update) is "rescued" from a worker presumed dead;
# if the handler of the attempt it lost had recorded that it started (MARK_STARTED, only
# done for rescued jobs), that worker was "lost" while running it.
DEQUEUE: LiteralString = (
    """
WITH open AS (
    SELECT """
    + _OPEN_ENTRYPOINTS
    + """ AS entrypoints
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
FROM chosen
WHERE j.id = chosen.id
RETURNING {job_columns}
"""
)

# The claim of a fetch connection that keeps no session settings (through a transaction
# pooler): it turns synchronous_commit off for its own transaction, from within the same
# statement. A SET LOCAL would cost three more round trips (BEGIN, SET, COMMIT).
DEQUEUE_ASYNC_COMMIT: LiteralString = DEQUEUE.replace(
    "FROM chosen\n",
    "FROM chosen, (SELECT set_config('synchronous_commit', 'off', true)) AS async_commit\n",
)

NEXT_DUE: LiteralString = (
    """
SELECT extract(epoch FROM min(execute_after) - {now})::float8 FROM {jobs}
WHERE status = 'queued' AND entrypoint = ANY("""
    + _OPEN_ENTRYPOINTS
    + """)
"""
)

# Never analyzed (reltuples is -1 until the first ANALYZE or VACUUM) yet holding rows.
NEEDS_STATISTICS: LiteralString = """
SELECT reltuples < 0 AND EXISTS (SELECT FROM {jobs})
FROM pg_class WHERE oid = {jobs_regclass}::regclass
"""

# Entrypoints with a global limit: claimers lock the entrypoint's row first (the count of
# running jobs is then exact), in one transaction with the claim.
# A new bucket starts full (refilled long ago).
ENSURE_LIMIT_ROWS: LiteralString = """
INSERT INTO {limits} (entrypoint, tokens, refilled)
SELECT e, 0, timestamptz '2000-01-01 00:00+00' FROM unnest(%(entrypoints)s::text[]) AS e
ON CONFLICT (entrypoint) DO NOTHING
"""

LOCK_LIMIT_ROW: LiteralString = """
SELECT tokens, extract(epoch FROM {now} - refilled)::float8 AS elapsed
FROM {limits} WHERE entrypoint = %(entrypoint)s
FOR UPDATE
"""

COUNT_PICKED: LiteralString = """
SELECT count(*) FROM {jobs} WHERE entrypoint = %(entrypoint)s AND status = 'picked'
"""

SET_TOKENS: LiteralString = """
UPDATE {limits} SET tokens = %(tokens)s, refilled = {now} WHERE entrypoint = %(entrypoint)s
"""

# Outcomes, fenced: only the worker holding the current attempt may record one. Rows are
# locked in id order, so concurrent completions cannot deadlock. Finished jobs leave the
# table for the log; failed ones (retries exhausted) stay, for inspection and requeue;
# retried ones go back to queued after their backoff. One NOTIFY tells waiters what finished.
# Each step joins the jobs table to ``owned`` by primary key and carries the outcome along
# in RETURNING: no step joins two CTEs (whose row counts the planner cannot know), so the
# cost stays linear in the number of outcomes however many a flush writes.
COMPLETE: LiteralString = """
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
    (SELECT pg_notify({channel}, json_build_object(
                'type', 'done',
                'ids', CASE WHEN count(*) <= 100 THEN array_agg(job_id) END,
                'entrypoints', CASE WHEN count(DISTINCT entrypoint) <= 20
                                    THEN array_agg(DISTINCT entrypoint) END)::text)
     FROM logged HAVING count(*) > 0) AS notified_done,
    (SELECT pg_notify({channel}, {requeue_event}) FROM retried HAVING count(*) > 0)
        AS notified_requeue
"""

# A handler of a rescued job is about to start: recorded first, fenced like an outcome, so
# that if this worker dies too, the next claim counts it as lost.
MARK_STARTED: LiteralString = """
UPDATE {jobs} SET started = {now}
WHERE id = %(id)s AND attempts = %(attempt)s AND worker_id = %(worker_id)s
  AND status = 'picked'
RETURNING id
"""

# Refresh the heartbeat of held jobs; report which are still held and which were cancelled.
HEARTBEAT: LiteralString = """
UPDATE {jobs} SET heartbeat = {now}
WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s AND status = 'picked'
RETURNING id, cancel_requested
"""

# Give held jobs back at once; unstarted ones do not use up an attempt.
RELEASE: LiteralString = """
WITH released AS (
    UPDATE {jobs} SET status = 'queued', worker_id = NULL, updated = {now}, started = NULL,
        attempts = attempts - CASE WHEN id = ANY(%(unstarted)s::bigint[]) THEN 1 ELSE 0 END
    WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s AND status = 'picked'
    RETURNING id
)
SELECT
    (SELECT array_agg(id) FROM released) AS released,
    (SELECT pg_notify({channel}, {requeue_event}) FROM released HAVING count(*) > 0) AS notified
"""

# After a lost connection: which of these outcomes did this worker write after all?
RECORDED: LiteralString = """
SELECT l.job_id FROM {log} l
JOIN unnest(%(ids)s::bigint[], %(attempts)s::integer[]) AS o(id, attempt)
  ON o.id = l.job_id AND o.attempt = l.attempts
WHERE l.worker_id = %(worker_id)s
"""

# -- control -------------------------------------------------------------------------------

# Queued and failed jobs are cancelled at once; running ones are asked to stop (the flag
# reaches their worker through NOTIFY, and through its next heartbeat if it missed that).
# Ids not targeted are reported: finished (in the log, or in the queue when the statement
# began and gone once their row lock was free: they finished meanwhile), or unknown.
CANCEL: LiteralString = """
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
    (SELECT pg_notify({channel}, json_build_object('type', 'cancel', 'ids', array_agg(id))::text)
     FROM flagged HAVING count(*) > 0) AS notified_cancel,
    (SELECT pg_notify({channel}, json_build_object('type', 'done', 'ids', array_agg(job_id))::text)
     FROM logged HAVING count(*) > 0) AS notified_done
"""

REQUEUE: LiteralString = """
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
"""

# -- inspection ----------------------------------------------------------------------------

QUEUE_SIZE: LiteralString = """
SELECT entrypoint, status::text AS status, count(*) AS count FROM {jobs}
GROUP BY entrypoint, status ORDER BY entrypoint, status
"""

CLEAR_QUEUE: LiteralString = """
DELETE FROM {jobs} WHERE status = 'queued'
AND (%(entrypoints)s::text[] IS NULL OR entrypoint = ANY(%(entrypoints)s::text[]))
"""

HISTORY: LiteralString = """
SELECT {log_columns} FROM {log} l
WHERE (%(entrypoints)s::text[] IS NULL OR l.entrypoint = ANY(%(entrypoints)s::text[]))
  AND (%(statuses)s::text[] IS NULL OR l.status::text = ANY(%(statuses)s::text[]))
  AND (%(job_ids)s::bigint[] IS NULL OR l.job_id = ANY(%(job_ids)s::bigint[]))
  AND (%(since)s::timestamptz IS NULL OR l.created >= %(since)s::timestamptz)
  AND (%(until)s::timestamptz IS NULL OR l.created < %(until)s::timestamptz)
ORDER BY l.id DESC
LIMIT %(limit)s
"""

# The latest outcome of each job that has one and is not queued or running again.
RESULTS: LiteralString = """
SELECT DISTINCT ON (l.job_id) {log_columns} FROM {log} l
WHERE l.job_id = ANY(%(ids)s::bigint[])
  AND NOT EXISTS (SELECT FROM {jobs} j WHERE j.id = l.job_id AND j.status IN ('queued', 'picked'))
ORDER BY l.job_id, l.id DESC
"""

KNOWN_IDS: LiteralString = """
SELECT id FROM {jobs} WHERE id = ANY(%(ids)s::bigint[])
UNION SELECT job_id FROM {log} WHERE job_id = ANY(%(ids)s::bigint[])
"""

GET_JOBS: LiteralString = """
SELECT {job_columns} FROM {jobs} j WHERE j.id = ANY(%(ids)s::bigint[]) ORDER BY j.id
"""

PRUNE_LOG: LiteralString = """
DELETE FROM {log} WHERE id IN (
    SELECT id FROM {log} WHERE created < {now} - %(older_than)s::interval
    ORDER BY id LIMIT %(batch)s FOR UPDATE SKIP LOCKED
)
"""
