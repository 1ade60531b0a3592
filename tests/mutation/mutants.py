"""The curated mutants: each a small bug a user would feel, and the tests that must catch it.

A mutant is one or more edits (file, snippet, replacement); snippets are exact text that
must occur once in their file. ``tests`` is a fast selection (files, folders, or
``file::test``) that should kill it; ``equivalent`` says why a mutant that survives changes
no behaviour a test can observe (it is then left out of the score).

Coverage: every statement of the enqueue and worker paths (``sql/queue.sql``,
``sql/engine.sql``, the control statements they rely on, the insert trigger and dedupe
index of ``sql/schema.sql``), the claim of a schedule's ticks (``sql/schedules.sql``), each
stage of ``engine/`` (fetcher, buffer, ledger, runner, rescue, flusher, presence, listener,
worker, shutdown), the retry policy, ``wait_for`` and both enqueue paths. A mutant is named
after the file it changes.
"""

from __future__ import annotations

import dataclasses

__all__ = ["CORE", "MUTANTS", "Edit", "Mutant"]

UNIT = "tests/unit"
QUERIES = "tests/integration/test_queries.py"
ENQUEUE = "tests/integration/test_enqueue_paths.py"
LIFECYCLE = "tests/integration/test_lifecycle.py"
FAST = "tests/integration/test_fast_paths.py"
WORKER = "tests/integration/test_worker.py"
SHUTDOWN = "tests/integration/test_shutdown.py"
ABUSE = "tests/integration/test_abuse.py"
PLAN = "tests/integration/test_plan.py"
AIO = "tests/aio"
STATEFUL = "tests/stateful"
BUFFER_MACHINE = "tests/stateful/test_buffer_machine.py"
RETRY_MACHINE = "tests/stateful/test_retry_machine.py"
SHUTDOWN_MACHINE = "tests/stateful/test_shutdown_machine.py"
FAULTS_LISTENER = (
    "tests/faults/test_database.py::test_a_killed_listener_comes_back_and_missed_jobs_are_polled"
)
FAULTS_BLACKHOLE = "tests/faults/test_database.py::test_a_black_holed_link_is_detected_and_replaced"
FAULTS_WORKERS = "tests/faults/test_workers.py"
LOST_CLAIM = "tests/integration/test_lost_claim.py"
LOST_WORKERS = "tests/integration/test_lost_workers.py"
PAUSE = "tests/integration/test_pause.py"
REGISTRY = "tests/integration/test_workers_registry.py"
PERIODIC = "tests/integration/test_periodic.py"
POISON = "tests/integration/test_poison.py"
STALLS = "tests/integration/test_stalls.py"
LISTENER_CLAIMS = "tests/integration/test_listener_claims.py"
SCHEDULE_MACHINE = "tests/stateful/test_schedule_machine.py"
# Everything but the fault suite.
CORE = ("tests/unit", "tests/integration", "tests/aio", "tests/stateful")

SCHEMA_SQL = "pgqueue_sync/sql/schema.sql"
QUEUE_SQL = "pgqueue_sync/sql/queue.sql"
ENGINE_SQL = "pgqueue_sync/sql/engine.sql"
SCHEDULES_SQL = "pgqueue_sync/sql/schedules.sql"
QUERIES_PY = "pgqueue_sync/queries.py"
WAITING = "pgqueue_sync/waiting.py"
RETRY = "pgqueue_sync/retry.py"
ENGINE = "pgqueue_sync/engine/"
STORE = ENGINE + "store.py"
FETCHER = ENGINE + "fetcher.py"
BUFFER = ENGINE + "buffer.py"
LEDGER = ENGINE + "ledger.py"
RUNNER = ENGINE + "runner.py"
EXECUTION = ENGINE + "execution.py"
RESCUE = ENGINE + "rescue.py"
FLUSHER = ENGINE + "flusher.py"
PRESENCE = ENGINE + "presence.py"
LISTENER = ENGINE + "listener.py"
SHUTDOWN_PY = ENGINE + "shutdown.py"
WORKER_PY = ENGINE + "worker.py"


@dataclasses.dataclass(frozen=True)
class Edit:
    file: str
    old: str
    new: str


@dataclasses.dataclass(frozen=True)
class Mutant:
    name: str
    why: str
    edits: tuple[Edit, ...]
    tests: tuple[str, ...]
    equivalent: str = ""


def mutant(
    name: str,
    why: str,
    file: str,
    old: str,
    new: str,
    *tests: str,
    equivalent: str = "",
) -> Mutant:
    return Mutant(name, why, (Edit(file, old, new),), tests, equivalent)


MUTANTS: list[Mutant] = [
    # -- sql/queue.sql: enqueue ---------------------------------------------------------
    mutant(
        "queue-sql.enqueue.delay-ignored",
        "INSERT ignores execute_after given as a delay",
        QUEUE_SQL,
        "COALESCE(t.at, {now} + COALESCE(t.delay, interval '0'))",
        "COALESCE(t.at, {now})",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue.time-ignored",
        "INSERT ignores execute_after given as a time",
        QUEUE_SQL,
        "COALESCE(t.at, {now} + COALESCE(t.delay, interval '0'))",
        "{now} + COALESCE(t.delay, interval '0')",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue.clock-ignored",
        "INSERT stamps due times with the database clock, not the injected one",
        QUEUE_SQL,
        "COALESCE(t.at, {now} + COALESCE(t.delay, interval '0'))",
        "COALESCE(t.at, now() + COALESCE(t.delay, interval '0'))",
        ENQUEUE,
        LIFECYCLE,
    ),
    mutant(
        "queue-sql.enqueue.priority-dropped",
        "INSERT drops priorities",
        QUEUE_SQL,
        "SELECT t.priority, t.entrypoint, t.payload,",
        "SELECT 0, t.entrypoint, t.payload,",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue.headers-dropped",
        "INSERT drops headers",
        QUEUE_SQL,
        "           t.dedupe_key, t.headers\n",
        "           t.dedupe_key, NULL::jsonb\n",
        QUERIES,
        LIFECYCLE,
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue.rows-unordered",
        "the unnest rows are not ordered by their position",
        QUEUE_SQL,
        "    ORDER BY t.n\n",
        "\n",
        QUERIES,
        ENQUEUE,
        equivalent="unnest WITH ORDINALITY yields rows in order and the INSERT keeps it: "
        "PostgreSQL's executor gives the same ids without the ORDER BY (kept because SQL "
        "does not promise it)",
    ),
    mutant(
        "queue-sql.enqueue.ids-descending",
        "INSERT returns the ids in reverse order",
        QUEUE_SQL,
        "SELECT COALESCE(array_agg(id ORDER BY id), '{{}}') FROM ins\n",
        "SELECT COALESCE(array_agg(id ORDER BY id DESC), '{{}}') FROM ins\n",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue-plain.priority-dropped",
        "a plain list (no due times, keys or headers) loses its priorities",
        QUEUE_SQL,
        "    SELECT priority, entrypoint, payload, {now} FROM unnest(\n",
        "    SELECT 0, entrypoint, payload, {now} FROM unnest(\n",
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue-plain.payload-dropped",
        "a plain list loses its payloads",
        QUEUE_SQL,
        "    SELECT priority, entrypoint, payload, {now} FROM unnest(\n",
        "    SELECT priority, entrypoint, NULL::bytea, {now} FROM unnest(\n",
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue-plain.clock-ignored",
        "a plain list is stamped with the database clock, not the injected one",
        QUEUE_SQL,
        "    SELECT priority, entrypoint, payload, {now} FROM unnest(\n",
        "    SELECT priority, entrypoint, payload, now() FROM unnest(\n",
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue-plain.ids-descending",
        "a plain list's ids are returned in reverse order",
        QUEUE_SQL,
        "SELECT COALESCE(array_agg(ins.id ORDER BY ins.id), '{{}}') FROM ins\n",
        "SELECT COALESCE(array_agg(ins.id ORDER BY ins.id DESC), '{{}}') FROM ins\n",
        ENQUEUE,
    ),
    mutant(
        "enqueue.plain-ignores-headers",
        "a list whose only option is headers takes the plain INSERT, which drops them",
        "pgqueue_sync/enqueue.py",
        "            and self.headers.count(None) == n\n",
        "",
        ENQUEUE,
    ),
    mutant(
        "enqueue.plain-ignores-due-times",
        "a list whose only option is a due time takes the plain INSERT, which drops it",
        "pgqueue_sync/enqueue.py",
        "            self.ats.count(None) == n\n            and self.delays.count(None) == n\n",
        "            True\n",
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue-skip.ids-descending",
        "INSERT ... ON CONFLICT returns the ids in reverse order",
        QUEUE_SQL,
        "SELECT id, dedupe_key FROM ins ORDER BY id\n",
        "SELECT id, dedupe_key FROM ins ORDER BY id DESC\n",
        LIFECYCLE,
        ENQUEUE,
    ),
    mutant(
        "queue-sql.enqueue-skip.conflict-predicate",
        "ON CONFLICT names only queued jobs",
        QUEUE_SQL,
        "IS NOT NULL AND status IN ('queued', 'picked')\n    DO NOTHING",
        "IS NOT NULL AND status IN ('queued')\n    DO NOTHING",
        LIFECYCLE,
        ENQUEUE,
        equivalent="the predicate only chooses the arbiter index; the one partial unique "
        "index (queued and picked) is still inferred and still decides the conflict",
    ),
    mutant(
        "queue-sql.jobs-by-dedupe-key.queued-only",
        "a skipped job's holder is looked up among queued jobs only (behaviour 2)",
        QUEUE_SQL,
        "WHERE dedupe_key = ANY(%(keys)s::text[]) AND status IN ('queued', 'picked')",
        "WHERE dedupe_key = ANY(%(keys)s::text[]) AND status IN ('queued')",
        LIFECYCLE,
    ),
    Mutant(
        "schema-sql.dedupe-index.queued-only",
        "the dedupe key is ignored while its job runs (behaviour 2): index and ON CONFLICT "
        "both name queued jobs only",
        (
            Edit(
                SCHEMA_SQL,
                "    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'picked');",
                "    WHERE dedupe_key IS NOT NULL AND status IN ('queued');",
            ),
            Edit(
                QUEUE_SQL,
                "IS NOT NULL AND status IN ('queued', 'picked')\n    DO NOTHING",
                "IS NOT NULL AND status IN ('queued')\n    DO NOTHING",
            ),
        ),
        (LIFECYCLE,),
    ),
    mutant(
        "queue-sql.reserve-ids.one-more",
        "COPY reserves one id too many",
        QUEUE_SQL,
        "FROM generate_series(1, %(count)s)",
        "FROM generate_series(0, %(count)s)",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queue-sql.reserve-ids.clock-ignored",
        "COPY stamps due times with the database clock, not the injected one",
        QUEUE_SQL,
        "SELECT {now} AS now, array_agg",
        "SELECT now() AS now, array_agg",
        ENQUEUE,
    ),
    Mutant(
        "queries.copy.columns-swapped",
        "COPY writes priority into the id column and the reverse",
        (
            Edit(
                QUERIES_PY,
                "                ids,\n                rows.priorities,\n",
                "                rows.priorities,\n                ids,\n",
            ),
        ),
        (QUERIES, ENQUEUE),
    ),
    # -- queries.py / enqueue paths ------------------------------------------------------
    mutant(
        "queries.copy.delays-ignored",
        "the COPY path ignores delays (behaviour 9)",
        QUERIES_PY,
        "at if at is not None else now if delay is None else now + delay",
        "at if at is not None else now",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queries.copy.times-ignored",
        "the COPY path ignores execute_after times",
        QUERIES_PY,
        "at if at is not None else now if delay is None else now + delay",
        "now if delay is None else now + delay",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queries.copy.ids-reversed",
        "the COPY path returns the ids in the wrong order (behaviour 8)",
        QUERIES_PY,
        "                    copy.write(chunk)\n        return ids\n",
        "                    copy.write(chunk)\n        return ids[::-1]\n",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queries.copy.ids-descending",
        "the COPY path numbers its rows from the highest id down",
        QUERIES_PY,
        "ids: list[JobId] = sorted(reserved[1])",
        "ids: list[JobId] = sorted(reserved[1], reverse=True)",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "queries.copy.threshold-off-by-one",
        "lists of exactly the threshold length take the INSERT path",
        QUERIES_PY,
        "            if len(rows) >= threshold:",
        "            if len(rows) > threshold:",
        QUERIES,
        ENQUEUE,
        equivalent="both paths write the same jobs and return the same ids (the property "
        "test shows it), so which one a list of exactly the threshold takes is not "
        "observable",
    ),
    mutant(
        "queries.unique.no-savepoint",
        "a duplicate key aborts the caller's transaction (dedupe savepoint)",
        QUERIES_PY,
        "            with conn.transaction():\n                return self._enqueue_insert",
        "            if True:\n                return self._enqueue_insert",
        LIFECYCLE,
    ),
    mutant(
        "queries.skip.unkeyed-reversed",
        "on_conflict='skip' hands the new unkeyed ids out in reverse",
        QUERIES_PY,
        "ids = iter(unkeyed)",
        "ids = iter(unkeyed[::-1])",
        ENQUEUE,
        LIFECYCLE,
    ),
    mutant(
        "waiting.notify-ignored",
        "wait_for ignores the completion NOTIFY and waits for its re-read (behaviour 6)",
        WAITING,
        "events.concerns(event, pending):\n                return",
        "events.concerns(event, pending):\n                continue",
        FAST,
        LIFECYCLE,
    ),
    mutant(
        "waiting.no-listen",
        "wait_for never LISTENs",
        WAITING,
        "                conn.execute(sql.listen_done)\n",
        "                pass\n",
        FAST,
        LIFECYCLE,
    ),
    mutant(
        "waiting.listens-on-the-wakeup-channel",
        "wait_for LISTENs where done events are not sent",
        WAITING,
        "                conn.execute(sql.listen_done)\n",
        "                conn.execute(sql.listen)\n",
        FAST,
        LIFECYCLE,
    ),
    # -- sql/engine.sql: the claim ---------------------------------------------------------
    mutant(
        "engine-sql.dequeue.stale.blocks-on-locks",
        "the rescue of stale jobs waits for rows another claim has locked",
        ENGINE_SQL,
        "    LIMIT %(limit)s\n    FOR UPDATE SKIP LOCKED\n), fresh AS",
        "    LIMIT %(limit)s\n    FOR UPDATE\n), fresh AS",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.fresh.blocks-on-locks",
        "the claim of queued jobs waits for rows another claim has locked",
        ENGINE_SQL,
        "    LIMIT %(fresh_limit)s\n    FOR UPDATE SKIP LOCKED",
        "    LIMIT %(fresh_limit)s\n    FOR UPDATE",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.fresh.unlocked",
        "the claim of queued jobs locks nothing: two claims can take the same job",
        ENGINE_SQL,
        "    LIMIT %(fresh_limit)s\n    FOR UPDATE SKIP LOCKED",
        "    LIMIT %(fresh_limit)s",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.stale.failed-too",
        "failed jobs are rescued as if their worker had died",
        ENGINE_SQL,
        "    WHERE status = 'picked'\n      AND %(retry_timer)s::interval IS NOT NULL",
        "    WHERE status IN ('picked', 'failed')\n      AND %(retry_timer)s::interval IS NOT NULL",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.stale.any-entrypoint",
        "a worker rescues stale jobs of entrypoints it does not handle",
        ENGINE_SQL,
        "      AND entrypoint = ANY((SELECT entrypoints FROM open)::text[])\n      AND heartbeat",
        "      AND heartbeat",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.stale.no-retry-timer",
        "a live worker's jobs are re-picked at once",
        ENGINE_SQL,
        "      AND heartbeat < {now} - %(retry_timer)s::interval",
        "      AND heartbeat < {now}",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.stale.newest-first",
        "stale jobs are rescued newest heartbeat first",
        ENGINE_SQL,
        "    ORDER BY heartbeat\n",
        "    ORDER BY heartbeat DESC\n",
        QUERIES,
        RETRY_MACHINE,
    ),
    mutant(
        "engine-sql.dequeue.fresh.any-status",
        "failed jobs are claimed like queued ones",
        ENGINE_SQL,
        "    WHERE status = 'queued'\n      AND entrypoint = ANY((SELECT",
        "    WHERE status IN ('queued', 'failed')\n      AND entrypoint = ANY((SELECT",
        QUERIES,
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.dequeue.fresh.not-due",
        "jobs are claimed before they are due",
        ENGINE_SQL,
        "      AND execute_after <= {now}\n    ORDER BY priority DESC",
        "    ORDER BY priority DESC",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.fresh.priority-ascending",
        "low priorities first (claim order)",
        ENGINE_SQL,
        "    ORDER BY priority DESC, execute_after, id",
        "    ORDER BY priority, execute_after, id",
        QUERIES,
        WORKER,
    ),
    mutant(
        "engine-sql.dequeue.fresh.due-time-ignored",
        "among equal priorities, by id instead of due time (claim order)",
        ENGINE_SQL,
        "    ORDER BY priority DESC, execute_after, id",
        "    ORDER BY priority DESC, id",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.fresh.limit-ignored",
        "the budget of a limited entrypoint is ignored (concurrency bound, rate)",
        ENGINE_SQL,
        "    LIMIT %(fresh_limit)s\n",
        "    LIMIT %(limit)s\n",
        LIFECYCLE,
        AIO,
    ),
    mutant(
        "engine-sql.dequeue.queued-after-stale",
        "queued jobs are claimed before stale ones",
        ENGINE_SQL,
        "SELECT id FROM stale UNION ALL SELECT id FROM fresh",
        "SELECT id FROM fresh UNION ALL SELECT id FROM stale",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.attempts-not-counted",
        "a claim does not count an attempt",
        ENGINE_SQL,
        "attempts = j.attempts + 1,",
        "attempts = j.attempts,",
        QUERIES,
    ),
    mutant(
        "engine-sql.dequeue.no-heartbeat",
        "a claim does not stamp the heartbeat: a job queued long is re-picked at once",
        ENGINE_SQL,
        "    heartbeat = {now}, updated = {now},\n    rescued",
        "    updated = {now},\n    rescued",
        QUERIES,
    ),
    mutant(
        "engine-sql.next-due.latest",
        "an idle worker sleeps until the latest due job instead of the earliest",
        ENGINE_SQL,
        "SELECT extract(epoch FROM min(execute_after) - {now})",
        "SELECT extract(epoch FROM max(execute_after) - {now})",
        WORKER,
    ),
    mutant(
        "engine-sql.needs-statistics.inverted",
        "a queue table that holds jobs is never analyzed",
        ENGINE_SQL,
        "SELECT reltuples < 0 AND EXISTS (SELECT FROM {jobs})",
        "SELECT reltuples < 0 AND NOT EXISTS (SELECT FROM {jobs})",
        PLAN,
    ),
    # -- sql/engine.sql: limits -----------------------------------------------------------
    mutant(
        "engine-sql.ensure-limit-rows.bucket-empty",
        "a new token bucket starts empty",
        ENGINE_SQL,
        "SELECT e, 0, timestamptz '2000-01-01 00:00+00'",
        "SELECT e, 0, {now}",
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.lock-limit-row.unlocked",
        "claims of a limited entrypoint are not serialised (concurrency row lock)",
        ENGINE_SQL,
        "FROM {limits} WHERE entrypoint = %(entrypoint)s\nFOR UPDATE\n",
        "FROM {limits} WHERE entrypoint = %(entrypoint)s\n",
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.count-picked.queued",
        "running jobs are counted among queued ones (concurrency bound)",
        ENGINE_SQL,
        "WHERE entrypoint = %(entrypoint)s AND status = 'picked'\n",
        "WHERE entrypoint = %(entrypoint)s AND status = 'queued'\n",
        LIFECYCLE,
        AIO,
    ),
    mutant(
        "engine-sql.set-tokens.never-refilled",
        "the bucket's refill time is never moved: it is always full",
        ENGINE_SQL,
        "SET tokens = %(tokens)s, refilled = {now} WHERE",
        "SET tokens = %(tokens)s WHERE",
        LIFECYCLE,
    ),
    # -- sql/engine.sql: completion --------------------------------------------------------
    mutant(
        "engine-sql.complete.fence-worker",
        "any worker may complete a job (one half of the fence)",
        ENGINE_SQL,
        "    WHERE j.worker_id = %(worker_id)s AND j.status = 'picked'\n    ORDER BY j.id",
        "    WHERE j.status = 'picked'\n    ORDER BY j.id",
        QUERIES,
    ),
    mutant(
        "engine-sql.complete.fence-attempt",
        "any attempt may complete a job (the other half)",
        ENGINE_SQL,
        "JOIN done d ON d.id = j.id AND d.attempt = j.attempts",
        "JOIN done d ON d.id = j.id",
        QUERIES,
    ),
    Mutant(
        "engine-sql.complete.no-fence",
        "completion without the fence",
        (
            Edit(
                ENGINE_SQL,
                "    SELECT d.* FROM {jobs} j JOIN done d ON d.id = j.id AND d.attempt = "
                "j.attempts\n    WHERE j.worker_id = %(worker_id)s AND j.status = 'picked'",
                "    SELECT d.* FROM {jobs} j JOIN done d ON d.id = j.id\n"
                "    WHERE j.status = 'picked'",
            ),
        ),
        (QUERIES, RETRY_MACHINE),
    ),
    mutant(
        "engine-sql.complete.status-unchecked",
        "a completion does not check the job is still picked",
        ENGINE_SQL,
        "    WHERE j.worker_id = %(worker_id)s AND j.status = 'picked'\n    ORDER BY j.id",
        "    WHERE j.worker_id = %(worker_id)s\n    ORDER BY j.id",
        QUERIES,
        LIFECYCLE,
        equivalent="every statement that takes a job out of 'picked' (completion, release, "
        "requeue, the operator's requeue) also clears worker_id, so the worker-id check "
        "implies the status check",
    ),
    mutant(
        "engine-sql.complete.no-row-lock",
        "a completion reads its fence from its snapshot, not from the locked row",
        ENGINE_SQL,
        "    ORDER BY j.id\n    FOR UPDATE OF j\n",
        "    ORDER BY j.id\n",
        QUERIES,
    ),
    mutant(
        "engine-sql.complete.failed-deleted",
        "failed jobs leave the table instead of staying for inspection and requeue",
        ENGINE_SQL,
        "    WHERE j.id = o.id AND o.status NOT IN ('queued', 'failed')",
        "    WHERE j.id = o.id AND o.status NOT IN ('queued')",
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.complete.failed-keeps-worker",
        "a failed job keeps its worker id",
        ENGINE_SQL,
        "    SET status = 'failed', worker_id = NULL, last_error",
        "    SET status = 'failed', last_error",
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.complete.failed-not-failed",
        "a job whose policy gave up goes back to the queue",
        ENGINE_SQL,
        "    SET status = 'failed', worker_id = NULL, last_error",
        "    SET status = 'queued', worker_id = NULL, last_error",
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.complete.retry-no-backoff",
        "a retried job is due at once (retry backoff)",
        ENGINE_SQL,
        "        execute_after = {now} + make_interval(secs => o.delay)",
        "        execute_after = {now}",
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.complete.retry-no-error",
        "a retried job does not keep its last error",
        ENGINE_SQL,
        "    SET status = 'queued', worker_id = NULL, last_error = o.traceback, updated = {now},\n"
        "        execute_after",
        "    SET status = 'queued', worker_id = NULL, updated = {now},\n        execute_after",
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.complete.log-without-worker",
        "the log does not say which worker ran the job",
        ENGINE_SQL,
        "r.priority, r.attempts, %(worker_id)s,",
        "r.priority, r.attempts, NULL,",
        QUERIES,
    ),
    mutant(
        "engine-sql.complete.done-notify-type",
        "the completion NOTIFY is not a 'done' event",
        ENGINE_SQL,
        "                'type', {done_type},\n",
        "                'type', 'finished',\n",
        FAST,
    ),
    mutant(
        "engine-sql.complete.done-notify-entrypoints",
        "the completion NOTIFY does not say which entrypoints finished",
        ENGINE_SQL,
        "THEN array_agg(DISTINCT entrypoint) END)::text)",
        "THEN ARRAY['?'] END)::text)",
        FAST,
    ),
    mutant(
        "engine-sql.complete.retry-notify",
        "a retried job wakes no idle worker",
        ENGINE_SQL,
        "    (SELECT pg_notify({channel}, {requeue_event}) FROM retried HAVING count(*) > 0)",
        "    (SELECT NULL FROM retried HAVING count(*) > 0)",
        FAST,
    ),
    # -- sql/engine.sql: heartbeat, release, recorded --------------------------------------
    mutant(
        "engine-sql.heartbeat.any-worker",
        "a heartbeat refreshes jobs of other workers",
        ENGINE_SQL,
        "WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s AND status = 'picked'\n"
        "RETURNING id, cancel_requested",
        "WHERE id = ANY(%(ids)s::bigint[]) AND status = 'picked'\nRETURNING id, cancel_requested",
        QUERIES,
    ),
    mutant(
        "engine-sql.heartbeat.not-refreshed",
        "a heartbeat refreshes nothing",
        ENGINE_SQL,
        "UPDATE {jobs} SET heartbeat = {now}\n",
        "UPDATE {jobs} SET heartbeat = heartbeat\n",
        QUERIES,
        FAST,
    ),
    mutant(
        "engine-sql.heartbeat.no-cancel-flag",
        "a heartbeat does not bring cancel requests",
        ENGINE_SQL,
        "RETURNING id, cancel_requested\n",
        "RETURNING id, false\n",
        LIFECYCLE,
    ),
    mutant(
        "engine-sql.release.attempt-kept",
        "a release does not give unstarted jobs their attempt back",
        ENGINE_SQL,
        "attempts = attempts - CASE WHEN id = ANY(%(unstarted)s::bigint[]) THEN 1 ELSE 0 END",
        "attempts = attempts",
        QUERIES,
        SHUTDOWN,
    ),
    mutant(
        "engine-sql.release.any-worker",
        "a worker releases jobs another worker holds",
        ENGINE_SQL,
        "    WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s "
        "AND status = 'picked'\n    RETURNING id\n)",
        "    WHERE id = ANY(%(ids)s::bigint[]) AND status = 'picked'\n    RETURNING id\n)",
        QUERIES,
    ),
    mutant(
        "engine-sql.release.notify",
        "a released job wakes no idle worker",
        ENGINE_SQL,
        "    (SELECT pg_notify({channel}, {requeue_event}) FROM released HAVING count(*) > 0)"
        " AS notified",
        "    NULL AS notified",
        FAST,
    ),
    mutant(
        "engine-sql.recorded.any-attempt",
        "recorded() counts an outcome of another attempt",
        ENGINE_SQL,
        "  ON o.id = l.job_id AND o.attempt = l.attempts\n",
        "  ON o.id = l.job_id\n",
        QUERIES,
    ),
    mutant(
        "engine-sql.recorded.any-worker",
        "recorded() counts another worker's outcome",
        ENGINE_SQL,
        "  ON o.id = l.job_id AND o.attempt = l.attempts\nWHERE l.worker_id = %(worker_id)s\n",
        "  ON o.id = l.job_id AND o.attempt = l.attempts\n",
        QUERIES,
    ),
    # -- sql/queue.sql and schema.sql: control statements the worker relies on -------------
    mutant(
        "queue-sql.cancel.failed-kept",
        "failed jobs can no longer be cancelled (behaviour 5)",
        QUEUE_SQL,
        "    WHERE j.id = t.id AND j.status IN ('queued', 'failed')",
        "    WHERE j.id = t.id AND j.status IN ('queued')",
        LIFECYCLE,
    ),
    mutant(
        "queue-sql.cancel.not-flagged",
        "a running job's cancellation is not recorded in its row",
        QUEUE_SQL,
        "    UPDATE {jobs} j SET cancel_requested = true, updated = {now}",
        "    UPDATE {jobs} j SET updated = {now}",
        LIFECYCLE,
    ),
    mutant(
        "queue-sql.cancel.notify-type",
        "the cancel NOTIFY is not a 'cancel' event",
        QUEUE_SQL,
        "json_build_object('type', {cancel_type}, 'ids', array_agg(id))",
        "json_build_object('type', 'stop', 'ids', array_agg(id))",
        FAST,
    ),
    mutant(
        "queue-sql.requeue.attempts-kept",
        "a requeued job keeps its spent attempts",
        QUEUE_SQL,
        "    SET status = 'queued', attempts = 0, worker_id = NULL,",
        "    SET status = 'queued', worker_id = NULL,",
        LIFECYCLE,
    ),
    mutant(
        "queue-sql.requeue.notify",
        "a requeued job wakes no idle worker",
        QUEUE_SQL,
        "    (SELECT pg_notify({channel}, {requeue_event}) FROM requeued HAVING count(*) > 0)"
        " AS notified",
        "    NULL AS notified",
        FAST,
    ),
    mutant(
        "queue-sql.results.live-jobs",
        "results include jobs that are queued or running again (behaviour 7)",
        QUEUE_SQL,
        "  AND NOT EXISTS (SELECT FROM {jobs} j WHERE j.id = l.job_id AND j.status IN "
        "('queued', 'picked'))\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "queue-sql.results.oldest",
        "results give a job's first outcome, not its latest",
        QUEUE_SQL,
        "ORDER BY l.job_id, l.id DESC\n",
        "ORDER BY l.job_id, l.id\n",
        LIFECYCLE,
    ),
    mutant(
        "schema-sql.insert-notify",
        "an insert wakes no idle worker",
        SCHEMA_SQL,
        "    PERFORM pg_notify({channel}, {insert_event});\n",
        "",
        FAST,
    ),
    # -- engine/store.py: limits -----------------------------------------------------------
    mutant(
        "store.limit.bound-plus-one",
        "one job more than the concurrency limit (concurrency bound)",
        STORE,
        "fresh = min(fresh, max(0, concurrency_limit - running))",
        "fresh = min(fresh, max(0, concurrency_limit - running + 1))",
        AIO,
        LIFECYCLE,
    ),
    mutant(
        "store.rate.no-tokens-spent",
        "claims of a rate-limited entrypoint spend no tokens",
        STORE,
        "                tokens -= len(jobs)\n",
        "",
        LIFECYCLE,
    ),
    # -- engine/: fetcher, ledger, flusher -------------------------------------------------
    mutant(
        "fetcher.free-room-ignored",
        "a claim asks for more jobs than the buffer has room for (buffer free room)",
        FETCHER,
        "want = min(self._options.claim_size if limit is None else limit, self._buffer.room())",
        "want = self._options.claim_size if limit is None else limit",
        BUFFER_MACHINE,
    ),
    mutant(
        "fetcher.per-worker-held-ignored",
        "the per-worker limit ignores the jobs already held",
        FETCHER,
        "want = min(want, entry.per_worker_limit - self._ledger.held_of(entry.name))",
        "want = min(want, entry.per_worker_limit)",
        LIFECYCLE,
    ),
    mutant(
        "ledger.hold.cancel-flag-ignored",
        "a job claimed with its cancellation requested still runs (behaviour 4)",
        LEDGER,
        "            if job.cancel_requested:\n                ctx.cancel()\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "ledger.hold.bulk-ignores-cancel-flag",
        "a claim's bulk path holds a job whose cancellation was requested as if it was not",
        LEDGER,
        "                and not any(map(_CANCEL_REQUESTED, jobs))\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "ledger.hold.bulk-ignores-held",
        "a claim's bulk path buffers a job the worker already holds at that attempt",
        LEDGER,
        "                and self._held.keys().isdisjoint(claimed)\n",
        "",
        LOST_CLAIM,
    ),
    mutant(
        "ledger.start.superseded-runs",
        "an attempt superseded while it waited in the buffer still runs",
        LEDGER,
        "            if held is None or held.attempts != job.attempts:\n",
        "            if False:\n",
        LOST_CLAIM,
        RETRY_MACHINE,
    ),
    mutant(
        "flusher.write.fence-skipped",
        "outcomes of jobs the worker no longer holds are sent to the database",
        FLUSHER,
        "batch = self._ledger.still_held(outcomes)",
        "batch = list(outcomes)",
        SHUTDOWN,
        STATEFUL,
        equivalent="the statement's own fence refuses them (their rows are released, "
        "re-picked or superseded): the jobs and the log are the same, only a warning and the "
        "run's fenced count differ",
    ),
    mutant(
        "flusher.write.fenced-never-counted",
        "outcomes the database fenced out are taken for recorded",
        FLUSHER,
        "            if len(recorded) == len(batch)\n            else [o.job_id",
        "            if True\n            else [o.job_id",
        LIFECYCLE,
    ),
    mutant(
        "flusher.write.no-idle",
        "the fetcher is not told when the worker holds nothing any more",
        FLUSHER,
        "        if idle:\n            self._mailbox.post(Mailbox.IDLE)\n",
        "",
        FAST,
    ),
    mutant(
        "flusher.beat.running-only",
        "heartbeats refresh running jobs only (heartbeat of buffered jobs)",
        FLUSHER,
        "        ids = set(self._ledger.held())\n",
        "        ids = {job.id for job in self._ledger.running_jobs()}\n",
        FAST,
        BUFFER_MACHINE,
    ),
    mutant(
        "flusher.beat.cancels-dropped",
        "a heartbeat does not pass cancel requests on",
        FLUSHER,
        "        self._ledger.cancel([job_id for job_id, requested in alive.items() "
        "if requested])\n        held = self._ledger.held()\n",
        "        held = self._ledger.held()\n",
        LIFECYCLE,
    ),
    mutant(
        "ledger.cancel.ignored",
        "cancel requests reach no handler",
        LEDGER,
        'cancellation requested", ctx.job.id)\n                ctx.cancel()\n',
        'cancellation requested", ctx.job.id)\n',
        LIFECYCLE,
        FAST,
    ),
    mutant(
        "worker.release.attempts-not-forgotten",
        "released jobs stay held: given back at a pause, they are claimed again at the same "
        "attempt, taken for a claim the server lost, and never run",
        WORKER_PY,
        "        self.ledger.forget(attempts)\n",
        "",
        PAUSE,
        SHUTDOWN,
        SHUTDOWN_MACHINE,
    ),
    # -- engine/worker.py and shutdown.py: events, the fetch loop, the stop ----------------
    mutant(
        "flusher.periodic.no-heartbeat",
        "the flusher never refreshes heartbeats (behaviour 11)",
        FLUSHER,
        "            self.beat()\n",
        "",
        FAST,
    ),
    mutant(
        "worker.event.cancel-ignored",
        "the cancel NOTIFY is ignored (behaviour 3)",
        WORKER_PY,
        "            self.flusher.check_cancellations(list(event.ids))\n",
        "            pass\n",
        FAST,
    ),
    mutant(
        "worker.event.insert-ignored",
        "an insert NOTIFY wakes no one",
        WORKER_PY,
        "                return True\n            self.mailbox.post(Mailbox.WAKE)\n",
        "                pass\n",
        FAST,
        LISTENER_CLAIMS,
    ),
    mutant(
        "worker.event.done-ignored",
        "a done NOTIFY does not free a worker held at a global limit",
        WORKER_PY,
        "if self.fetcher.blocked and self.fetcher.unblock(event.entrypoints):",
        "if False:",
        FAST,
    ),
    mutant(
        "fetcher.done-never-heard",
        "a worker with a concurrency limit does not LISTEN for done events",
        ENGINE + "fetcher.py",
        "return any(e.concurrency_limit is not None for e in self._limited)",
        "return False",
        FAST,
    ),
    mutant(
        "worker.listen.no-poll",
        "the worker does not poll when its listener (re)connects",
        WORKER_PY,
        "        self.fetcher.unblock()\n        self.mailbox.post(Mailbox.WAKE)\n",
        "        self.fetcher.unblock()\n",
        FAULTS_LISTENER,
        FAULTS_BLACKHOLE,
    ),
    mutant(
        "fetcher.idle.retry-timer-unbounded",
        "the idle sleep is not bounded by retry_timer (idle timeout bound)",
        FETCHER,
        "            timeout = min(timeout, self._options.retry_timer.total_seconds())",
        "            timeout = timeout",
        RETRY_MACHINE,
    ),
    mutant(
        "fetcher.idle.due-ignored",
        "the idle sleep ignores the next due job",
        FETCHER,
        "            timeout = min(timeout, max(due, 0.1))",
        "            timeout = timeout",
        WORKER,
    ),
    mutant(
        "shutdown.deadline-ignored",
        "the shutdown waits for running jobs past its deadline",
        SHUTDOWN_PY,
        "            if left is not None and left <= 0:\n                break",
        "            if False:\n                break",
        SHUTDOWN,
    ),
    mutant(
        "shutdown.no-release",
        "release skipped at the shutdown deadline (shutdown release)",
        SHUTDOWN_PY,
        "                self._release(unstarted | running, unstarted)",
        "                pass",
        SHUTDOWN,
        SHUTDOWN_MACHINE,
    ),
    mutant(
        "shutdown.unstarted-charged",
        "jobs released at the deadline lose an attempt they never started",
        SHUTDOWN_PY,
        "                self._release(unstarted | running, unstarted)",
        "                self._release(unstarted | running, set())",
        SHUTDOWN,
        SHUTDOWN_MACHINE,
    ),
    mutant(
        "worker.drain.stops-early",
        "drain mode stops while a held job may still come back",
        WORKER_PY,
        "                if held_during_claim:\n                    continue\n",
        "",
        LIFECYCLE,
        WORKER,
    ),
    mutant(
        "worker.listener-claim.never",
        "an idle worker's wake-up goes to the sleeping fetch loop, never claimed at once on "
        "the listener's awake thread and connection (the idle pick-up time)",
        WORKER_PY,
        "                return True\n            self.mailbox.post(Mailbox.WAKE)\n",
        "                pass\n            self.mailbox.post(Mailbox.WAKE)\n",
        LISTENER_CLAIMS,
    ),
    mutant(
        "worker.listener-claim.empty-keeps-loop-asleep",
        "a listener's claim that found nothing due leaves the fetch loop asleep: a deferred "
        "job enqueued while the worker sleeps waits for the idle timeout",
        WORKER_PY,
        "            if not jobs or len(jobs) >= want:",
        "            if jobs and len(jobs) >= want:",
        LISTENER_CLAIMS,
    ),
    mutant(
        "worker.listener-claim.full-keeps-loop-asleep",
        "a listener's claim that filled a whole claim leaves the fetch loop asleep: the jobs "
        "beyond it wait for the idle timeout",
        WORKER_PY,
        "            if not jobs or len(jobs) >= want:",
        "            if not jobs:",
        LISTENER_CLAIMS,
    ),
    mutant(
        "worker.listener-claim.no-nudge",
        "while the fetch loop sleeps, no one nudges the threads the listener's jobs need: "
        "jobs behind a short handler that runs long wait for it",
        WORKER_PY,
        "        return self.buffer.nudge() if self._fetch_asleep else None\n",
        "        return None\n",
        LISTENER_CLAIMS,
    ),
    mutant(
        "worker.listener-claim.shutdown-does-not-wait",
        "the shutdown begins while the listener's claim is under way: the job it claims is "
        "left picked by a stopped worker",
        WORKER_PY,
        "                self.close_claims()\n",
        "",
        LISTENER_CLAIMS,
    ),
    mutant(
        "worker.listener-claim.partial",
        "the listener claims into the buffer's last slots, where the fetch loop waits for "
        "room for a whole claim",
        WORKER_PY,
        "                or self.buffer.room() < want\n",
        "",
        LISTENER_CLAIMS,
    ),
    mutant(
        "worker.listener-claim.unwatched",
        "a claim stalled on the listener's connection is never cut (the listener, which "
        "watches the other connections, is the one stuck)",
        WORKER_PY,
        '        self.connections["listen"].abort_if_stalled()\n',
        "",
        LISTENER_CLAIMS,
    ),
    # -- engine/listener.py ----------------------------------------------------------------
    mutant(
        "listener.reconnect.no-poll",
        "the listener does not poll after it reconnects (behaviour 10)",
        LISTENER,
        "            self._on_connect()\n",
        "",
        FAULTS_LISTENER,
        FAULTS_BLACKHOLE,
    ),
    mutant(
        "listener.reconnect.no-listen",
        "the listener never LISTENs again after its connection drops (behaviour 10)",
        LISTENER,
        "            self._listen()\n            self.reconnects += 1",
        "            self.reconnects += 1",
        FAULTS_LISTENER,
        FAULTS_BLACKHOLE,
    ),
    mutant(
        "listener.claim.packet-cut",
        "the listener leaves its wait at the event that asks for a claim: the events after it "
        "in the same packet (a cancellation) are lost",
        LISTENER,
        "                        claim = self._dispatch(notify.payload) or claim\n",
        "                        if self._dispatch(notify.payload):\n"
        "                            claim = True\n"
        "                            break\n",
        LISTENER_CLAIMS,
    ),
    mutant(
        "listener.deafness-unnoticed",
        "a listener on a black-holed link never notices it hears nothing",
        LISTENER,
        "if self._probe_id is not None and silent > self._deaf_after:",
        "if False:",
        FAULTS_BLACKHOLE,
    ),
    # -- engine/execution.py and retry.py --------------------------------------------------
    mutant(
        "execution.cancelled-buffered-runs",
        "a cancelled job that is buffered still runs its handler (behaviour 4)",
        EXECUTION,
        "    if ctx._cancelled:  # is_cancelled, without the property's call (once per job)\n"
        "        return _outcome(job, started, clock, JobStatus.CANCELED)\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "execution.cancel-is-exception",
        "a handler that stops on cancellation ends 'exception'",
        EXECUTION,
        "    except JobCancelled:\n"
        "        return _outcome(job, started, clock, JobStatus.CANCELED,",
        "    except JobCancelled:\n"
        "        return _outcome(job, started, clock, JobStatus.EXCEPTION,",
        LIFECYCLE,
    ),
    mutant(
        "execution.retry-requested-without-policy",
        "RetryRequested fails the job when the entrypoint has no policy",
        EXECUTION,
        "    if policy is None and isinstance(exc, RetryRequested):\n        policy = _ALWAYS\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "execution.age-zero",
        "stop_after_delay never stops (a job's age is always 0)",
        EXECUTION,
        "    return max(0.0, (reference - job.created).total_seconds())",
        "    return 0.0",
        LIFECYCLE,
    ),
    mutant(
        "retry.requested-ignores-stop",
        "RetryRequested ignores the policy's stop (behaviour 1)",
        RETRY,
        "            return None if self.stop(state) else error.delay",
        "            return error.delay",
        LIFECYCLE,
    ),
    mutant(
        "retry.predicate-ignored",
        "every exception is retried, whatever the policy's retry predicate says",
        RETRY,
        "        if not self.retry(state) or self.stop(state):",
        "        if self.stop(state):",
        LIFECYCLE,
    ),
    mutant(
        "retry.stop-ignored",
        "the policy's stop is ignored: a failing job retries forever",
        RETRY,
        "        if not self.retry(state) or self.stop(state):",
        "        if not self.retry(state):",
        LIFECYCLE,
        RETRY_MACHINE,
    ),
    # -- engine/buffer.py ------------------------------------------------------------------
    mutant(
        "buffer.no-room-signal",
        "a full buffer that gains room does not wake the fetcher",
        BUFFER,
        "        if room == self.watermark and self._on_room is not None:",
        "        if False:",
        UNIT,
        WORKER,
    ),
    mutant(
        "buffer.put-wakes-one-always",
        "a claim wakes a single handler thread even while handlers are slow: jobs that could "
        "run side by side wait for the one awake thread (or for the stall nudge)",
        BUFFER,
        "            self.not_empty.notify(1 if self.short_jobs() else len(items))",
        "            self.not_empty.notify(1)",
        UNIT,
    ),
    mutant(
        "buffer.nudge-never-wakes",
        "jobs stuck behind a short handler that runs long wait until it returns (or until an "
        "idle thread's own timeout)",
        BUFFER,
        "                return STALL - waited\n            self.not_empty.notify(len(self.queue))",
        "                return STALL - waited",
        UNIT,
        STALLS,
    ),
    mutant(
        "worker.fetch-loop-no-nudge",
        "the fetch loop never nudges the buffer: the same stall, however the buffer behaves",
        WORKER_PY,
        "            nudge_in = self.buffer.nudge()",
        '            nudge_in = float("inf")',
        STALLS,
    ),
    mutant(
        "models.from-claim-heartbeat",
        "a claimed job's heartbeat is not the one its claim wrote",
        "pgqueue_sync/models.py",
        '                "heartbeat": updated,  # both set to the claim\'s now()',
        '                "heartbeat": created,',
        UNIT,
        WORKER,
    ),
    mutant(
        "models.from-claim-due-time-null",
        "a job due when it was enqueued reaches its handler with no execute_after",
        "pgqueue_sync/models.py",
        '"execute_after": created if execute_after is None else execute_after,',
        '"execute_after": execute_after,',
        UNIT,
        WORKER,
    ),
    mutant(
        "sql.claim.due-time-always-creation",
        "a deferred job reaches its handler with its creation as its due time",
        "pgqueue_sync/sql/__init__.py",
        '"execute_after": "NULLIF(j.execute_after, j.created)",',
        '"execute_after": "NULL",',
        WORKER,
    ),
    mutant(
        "sql.claim.time-on-no-row",
        "no row of a claim carries the claim's time",
        "pgqueue_sync/sql/__init__.py",
        '"updated": "CASE WHEN j.id = (SELECT min(id) FROM chosen) THEN j.updated END",',
        '"updated": "CASE WHEN false THEN j.updated END",',
        WORKER,
    ),
    # -- the stages added by the engine's layout ----------------------------------------------
    mutant(
        "ledger.hold.lost-claim-runs-twice",
        "a job claimed again at the attempt the worker holds (the server lost the first, "
        "asynchronously committed claim) is buffered and run a second time",
        LEDGER,
        "            if older is not None and older.attempts == job.attempts:",
        "            if False:",
        LOST_CLAIM,
    ),
    mutant(
        "ledger.hold.superseded-not-cancelled",
        "an attempt superseded by the worker's own re-claim is not told to stop",
        LEDGER,
        "                if stale is not None:\n                    stale.cancel()\n",
        "",
        LOST_CLAIM,
    ),
    mutant(
        "engine-sql.dequeue.lost-not-counted",
        "a rescue never counts a worker lost while running the job (max_lost)",
        ENGINE_SQL,
        "    lost = j.lost + (j.status = 'picked' AND j.started IS NOT NULL)::integer,",
        "    lost = j.lost,",
        LOST_WORKERS,
    ),
    mutant(
        "rescue.start-not-recorded",
        "a rescued job's handler starts without recording it: its next loss is not counted",
        RESCUE,
        "            if self._store.mark_started(self._worker_id, job.id, job.attempts):",
        "            if True:",
        LOST_WORKERS,
    ),
    mutant(
        "rescue.max-lost-off-by-one",
        "a job whose workers were lost max_lost times runs once more",
        RESCUE,
        "if limit is not None and job.lost >= limit:",
        "if limit is not None and job.lost > limit:",
        LOST_WORKERS,
    ),
    mutant(
        "rescue.suspects-run-together",
        "jobs already counted as lost run side by side (a second loss is charged to both)",
        RESCUE,
        "if limit is not None and job.lost and not self._run_alone(key):",
        "if False:",
        LOST_WORKERS,
    ),
    mutant(
        "engine-sql.dequeue.paused-claimed",
        "the claim takes jobs of paused entrypoints",
        ENGINE_SQL,
        "        WHERE NOT EXISTS (SELECT FROM {paused} p WHERE p.entrypoint = e)\n",
        "",
        PAUSE,
    ),
    mutant(
        "presence.pause.buffered-kept",
        "a pause leaves the buffered jobs of the paused entrypoint in the buffer",
        PRESENCE,
        "        held = self._buffer.remove_if(lambda job: job.entrypoint in paused)",
        "        held = self._buffer.remove_if(lambda job: False)",
        PAUSE,
    ),
    mutant(
        "runner.paused-runs",
        "a job of a paused entrypoint that reaches a handler thread runs",
        RUNNER,
        "        if job.entrypoint in self._presence.paused and (",
        "        if False and (",
        PAUSE,
    ),
    mutant(
        "presence.beat.row-not-refreshed",
        "the workers registry's row is not refreshed with the heartbeats",
        PRESENCE,
        '    def beat(self) -> None:\n        """With each heartbeat: refresh the worker\'s row; '
        'read the paused set with it."""\n        self._apply(',
        '    def beat(self) -> None:\n        """With each heartbeat: refresh the worker\'s row; '
        'read the paused set with it."""\n        return\n        self._apply(',
        REGISTRY,
    ),
    mutant(
        "engine-sql.worker-beat.heartbeat-kept",
        "a worker's heartbeats leave its registry row's heartbeat where it was",
        ENGINE_SQL,
        "    SET heartbeat = EXCLUDED.heartbeat, threads",
        "    SET threads",
        REGISTRY,
    ),
    mutant(
        "engine-sql.worker-beat.live-forgotten",
        "a worker's beat deletes the rows of other live workers",
        ENGINE_SQL,
        "    WHERE id <> %(id)s AND heartbeat < {now} - %(forget_after)s::interval",
        "    WHERE id <> %(id)s",
        REGISTRY,
    ),
    mutant(
        "presence.stop.row-kept",
        "a worker that stops cleanly leaves its row in the registry",
        PRESENCE,
        "            self._store.worker_gone(self.worker_id)",
        "            pass",
        REGISTRY,
    ),
    mutant(
        "schedules-sql.lock-schedule.unlocked",
        "workers claim a schedule's ticks without holding its row: a tick is enqueued twice",
        SCHEDULES_SQL,
        "FROM {schedules} WHERE name = %(name)s\nFOR UPDATE SKIP LOCKED",
        "FROM {schedules} WHERE name = %(name)s",
        PERIODIC,
        SCHEDULE_MACHINE,
        equivalent="the compare-and-set of enqueue_ticks refuses the second of two "
        "concurrent claims (its UPDATE waits for the first, then finds the cursor moved) and "
        "the claim's transaction rolls its inserts back: no tick is enqueued twice; only "
        "that worker's warning and backoff differ",
    ),
    mutant(
        "schedules-sql.enqueue-ticks.no-compare",
        "a tick is enqueued whatever the schedule's cursor says now",
        SCHEDULES_SQL,
        "    WHERE s.name = %(name)s AND s.next_tick = %(expected)s\n    ORDER BY t.n",
        "    WHERE s.name = %(name)s\n    ORDER BY t.n",
        PERIODIC,
        SCHEDULE_MACHINE,
        equivalent="a second guard: the claim holds the schedule's row (lock_schedule), so "
        "the cursor is always where the claim read it",
    ),
    Mutant(
        "schedules-sql.claim.unguarded",
        "a schedule's ticks are claimed without the row lock and without the compare-and-set: "
        "workers claiming at the same instant enqueue a tick twice",
        (
            Edit(
                SCHEDULES_SQL,
                "FROM {schedules} WHERE name = %(name)s\nFOR UPDATE SKIP LOCKED",
                "FROM {schedules} WHERE name = %(name)s",
            ),
            Edit(
                SCHEDULES_SQL,
                "    WHERE s.name = %(name)s AND s.next_tick = %(expected)s\n    ORDER BY t.n",
                "    WHERE s.name = %(name)s\n    ORDER BY t.n",
            ),
            Edit(
                SCHEDULES_SQL,
                "    WHERE s.name = %(name)s AND s.next_tick = %(expected)s\n    RETURNING",
                "    WHERE s.name = %(name)s\n    RETURNING",
            ),
        ),
        (PERIODIC, SCHEDULE_MACHINE),
    ),
    mutant(
        "flusher.split.second-half-dropped",
        "when the database refuses a batch, only its first half is written again: the "
        "refused row's batch mates run a second time after retry_timer",
        FLUSHER,
        "return self._complete(batch[:half]) | self._complete(batch[half:])",
        "return self._complete(batch[:half])",
        POISON,
    ),
    mutant(
        "flusher.refused.not-replaced",
        "a row the database refuses is not recorded as an exception: its job stays picked and "
        "runs again",
        FLUSHER,
        "            return self._store.complete(self.worker_id, [replacement]).recorded\n",
        "            return set()\n",
        POISON,
    ),
    mutant(
        "store.storable-text-skipped",
        "a traceback holding NUL or a lone surrogate is sent as it is (the database refuses it)",
        STORE,
        "tracebacks = tuple(map(storable_text, tracebacks))",
        "tracebacks = tuple(tracebacks)",
        POISON,
    ),
    mutant(
        "runner.stuck.not-replaced",
        "a handler thread retired past its timeout is not replaced",
        RUNNER,
        "                    if len(self._retired) <= self._options.workers:\n"
        "                        replace += 1\n",
        "",
        ABUSE,
        STALLS,
    ),
    mutant(
        "runner.stuck.buffered-kept",
        "a worker whose every thread is stuck keeps its buffered jobs instead of giving them back",
        RUNNER,
        "        if not self.can_start():\n            self._release_unstartable()\n",
        "",
        STALLS,
    ),
    mutant(
        "runner.stuck.thread-not-retired",
        "a stuck thread whose handler returns at last goes on taking jobs",
        RUNNER,
        "                    if self._retired and self._is_retired(me):\n"
        "                        return\n",
        "",
        ABUSE,
        STALLS,
    ),
]
