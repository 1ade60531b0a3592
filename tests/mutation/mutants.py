"""The curated mutants: each a small bug a user would feel, and the tests that must catch it.

A mutant is one or more edits (file, snippet, replacement); snippets are exact text that
must occur once in their file. ``tests`` is a fast selection (files, folders, or
``file::test``) that should kill it; ``equivalent`` says why a mutant that survives changes
no behaviour a test can observe (it is then left out of the score).

Coverage: every statement of the enqueue and worker paths of ``sql/dml.py`` (and the
control statements those paths rely on), the engine's stages (fetch, run, flush, heartbeat,
cancel, release, shutdown, listener), the retry policy and the enqueue paths.
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
# Everything but the fault suite.
CORE = ("tests/unit", "tests/integration", "tests/aio", "tests/stateful")

DML = "pgqueue_sync/sql/dml.py"
DDL = "pgqueue_sync/sql/ddl.py"
QUERIES_PY = "pgqueue_sync/queries.py"
WORKER_QUERIES = "pgqueue_sync/worker_queries.py"
STEPS = "pgqueue_sync/steps.py"
WORKER_PY = "pgqueue_sync/worker.py"
LISTENER = "pgqueue_sync/listener.py"
EXECUTION = "pgqueue_sync/execution.py"
RETRY = "pgqueue_sync/retry.py"
BUFFER = "pgqueue_sync/buffer.py"


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
    # -- sql/dml.py: enqueue -----------------------------------------------------------
    mutant(
        "dml.enqueue.delay-ignored",
        "INSERT ignores execute_after given as a delay",
        DML,
        "COALESCE(t.at, {now} + COALESCE(t.delay, interval '0'))",
        "COALESCE(t.at, {now})",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "dml.enqueue.time-ignored",
        "INSERT ignores execute_after given as a time",
        DML,
        "COALESCE(t.at, {now} + COALESCE(t.delay, interval '0'))",
        "{now} + COALESCE(t.delay, interval '0')",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "dml.enqueue.clock-ignored",
        "INSERT stamps due times with the database clock, not the injected one",
        DML,
        "COALESCE(t.at, {now} + COALESCE(t.delay, interval '0'))",
        "COALESCE(t.at, now() + COALESCE(t.delay, interval '0'))",
        ENQUEUE,
        LIFECYCLE,
    ),
    mutant(
        "dml.enqueue.priority-dropped",
        "INSERT drops priorities",
        DML,
        "    SELECT t.priority, t.entrypoint, t.payload,",
        "    SELECT 0, t.entrypoint, t.payload,",
        QUERIES,
    ),
    mutant(
        "dml.enqueue.headers-dropped",
        "INSERT drops headers",
        DML,
        "           t.dedupe_key, t.headers\n",
        "           t.dedupe_key, NULL::jsonb\n",
        QUERIES,
        LIFECYCLE,
        ENQUEUE,
    ),
    mutant(
        "dml.enqueue.rows-unordered",
        "the unnest rows are not ordered by their position",
        DML,
        "    ORDER BY t.n\n",
        "\n",
        QUERIES,
        ENQUEUE,
        equivalent="unnest WITH ORDINALITY yields rows in order and the INSERT keeps it: "
        "PostgreSQL's executor gives the same ids without the ORDER BY (kept because SQL "
        "does not promise it)",
    ),
    mutant(
        "dml.enqueue.ids-descending",
        "INSERT returns the ids in reverse order",
        DML,
        "SELECT id FROM ins ORDER BY id\n",
        "SELECT id FROM ins ORDER BY id DESC\n",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "dml.enqueue-skip.ids-descending",
        "INSERT ... ON CONFLICT returns the ids in reverse order",
        DML,
        "SELECT id, dedupe_key FROM ins ORDER BY id\n",
        "SELECT id, dedupe_key FROM ins ORDER BY id DESC\n",
        LIFECYCLE,
        ENQUEUE,
    ),
    mutant(
        "dml.enqueue-skip.conflict-predicate",
        "ON CONFLICT names only queued jobs",
        DML,
        "IS NOT NULL AND status IN ('queued', 'picked')\n    DO NOTHING",
        "IS NOT NULL AND status IN ('queued')\n    DO NOTHING",
        LIFECYCLE,
        ENQUEUE,
        equivalent="the predicate only chooses the arbiter index; the one partial unique "
        "index (queued and picked) is still inferred and still decides the conflict",
    ),
    mutant(
        "dml.jobs-by-dedupe-key.queued-only",
        "a skipped job's holder is looked up among queued jobs only (behaviour 2)",
        DML,
        "WHERE dedupe_key = ANY(%(keys)s::text[]) AND status IN ('queued', 'picked')",
        "WHERE dedupe_key = ANY(%(keys)s::text[]) AND status IN ('queued')",
        LIFECYCLE,
    ),
    Mutant(
        "ddl.dedupe-index.queued-only",
        "the dedupe key is ignored while its job runs (behaviour 2): index and ON CONFLICT "
        "both name queued jobs only",
        (
            Edit(
                DDL,
                "    WHERE dedupe_key IS NOT NULL AND status IN ('queued', 'picked');",
                "    WHERE dedupe_key IS NOT NULL AND status IN ('queued');",
            ),
            Edit(
                DML,
                "IS NOT NULL AND status IN ('queued', 'picked')\n    DO NOTHING",
                "IS NOT NULL AND status IN ('queued')\n    DO NOTHING",
            ),
        ),
        (LIFECYCLE,),
    ),
    mutant(
        "dml.reserve-ids.one-more",
        "COPY reserves one id too many",
        DML,
        "FROM generate_series(1, %(count)s)",
        "FROM generate_series(0, %(count)s)",
        QUERIES,
        ENQUEUE,
    ),
    mutant(
        "dml.reserve-ids.clock-ignored",
        "COPY stamps due times with the database clock, not the injected one",
        DML,
        "SELECT {now} AS now, array_agg",
        "SELECT now() AS now, array_agg",
        ENQUEUE,
    ),
    mutant(
        "dml.copy-jobs.columns-swapped",
        "COPY writes priority into the id column and the reverse",
        DML,
        "COPY {jobs} (id, priority, entrypoint",
        "COPY {jobs} (priority, id, entrypoint",
        QUERIES,
        ENQUEUE,
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
        "                    write(row)\n        return ids\n",
        "                    write(row)\n        return ids[::-1]\n",
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
        "unkeyed = iter([job_id for job_id, key in inserted if key is None])",
        "unkeyed = iter([job_id for job_id, key in inserted if key is None][::-1])",
        ENQUEUE,
        LIFECYCLE,
    ),
    mutant(
        "queries.wait-for.notify-ignored",
        "wait_for ignores the completion NOTIFY and waits for its re-read (behaviour 6)",
        QUERIES_PY,
        "pending.intersection(ids):\n                    return",
        "pending.intersection(ids):\n                    continue",
        FAST,
        LIFECYCLE,
    ),
    mutant(
        "queries.wait-for.no-listen",
        "wait_for never LISTENs",
        QUERIES_PY,
        "                conn.execute(self._sql.listen)\n",
        "",
        FAST,
        LIFECYCLE,
    ),
    # -- sql/dml.py: the claim -------------------------------------------------------------
    mutant(
        "dml.dequeue.stale.blocks-on-locks",
        "the rescue of stale jobs waits for rows another claim has locked",
        DML,
        "    LIMIT %(limit)s\n    FOR UPDATE SKIP LOCKED\n), fresh AS",
        "    LIMIT %(limit)s\n    FOR UPDATE\n), fresh AS",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.fresh.blocks-on-locks",
        "the claim of queued jobs waits for rows another claim has locked",
        DML,
        "    LIMIT %(fresh_limit)s\n    FOR UPDATE SKIP LOCKED",
        "    LIMIT %(fresh_limit)s\n    FOR UPDATE",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.fresh.unlocked",
        "the claim of queued jobs locks nothing: two claims can take the same job",
        DML,
        "    LIMIT %(fresh_limit)s\n    FOR UPDATE SKIP LOCKED",
        "    LIMIT %(fresh_limit)s",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.stale.failed-too",
        "failed jobs are rescued as if their worker had died",
        DML,
        "    WHERE status = 'picked'\n      AND %(retry_timer)s::interval IS NOT NULL",
        "    WHERE status IN ('picked', 'failed')\n      AND %(retry_timer)s::interval IS NOT NULL",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.stale.any-entrypoint",
        "a worker rescues stale jobs of entrypoints it does not handle",
        DML,
        "      AND entrypoint = ANY(%(entrypoints)s::text[])\n      AND heartbeat",
        "      AND heartbeat",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.stale.no-retry-timer",
        "a live worker's jobs are re-picked at once",
        DML,
        "      AND heartbeat < {now} - %(retry_timer)s::interval",
        "      AND heartbeat < {now}",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.stale.newest-first",
        "stale jobs are rescued newest heartbeat first",
        DML,
        "    ORDER BY heartbeat\n",
        "    ORDER BY heartbeat DESC\n",
        QUERIES,
        RETRY_MACHINE,
    ),
    mutant(
        "dml.dequeue.fresh.any-status",
        "failed jobs are claimed like queued ones",
        DML,
        "    WHERE status = 'queued'\n      AND entrypoint = ANY(%(entrypoints)s::text[])\n"
        "      AND execute_after <= {now}",
        "    WHERE status IN ('queued', 'failed')\n"
        "      AND entrypoint = ANY(%(entrypoints)s::text[])\n"
        "      AND execute_after <= {now}",
        QUERIES,
        LIFECYCLE,
    ),
    mutant(
        "dml.dequeue.fresh.not-due",
        "jobs are claimed before they are due",
        DML,
        "      AND execute_after <= {now}\n    ORDER BY priority DESC",
        "    ORDER BY priority DESC",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.fresh.priority-ascending",
        "low priorities first (claim order)",
        DML,
        "    ORDER BY priority DESC, execute_after, id",
        "    ORDER BY priority, execute_after, id",
        QUERIES,
        WORKER,
    ),
    mutant(
        "dml.dequeue.fresh.due-time-ignored",
        "among equal priorities, by id instead of due time (claim order)",
        DML,
        "    ORDER BY priority DESC, execute_after, id",
        "    ORDER BY priority DESC, id",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.fresh.limit-ignored",
        "the budget of a limited entrypoint is ignored (concurrency bound, rate)",
        DML,
        "    LIMIT %(fresh_limit)s\n",
        "    LIMIT %(limit)s\n",
        LIFECYCLE,
        AIO,
    ),
    mutant(
        "dml.dequeue.queued-after-stale",
        "queued jobs are claimed before stale ones",
        DML,
        "SELECT id FROM stale UNION ALL SELECT id FROM fresh",
        "SELECT id FROM fresh UNION ALL SELECT id FROM stale",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.attempts-not-counted",
        "a claim does not count an attempt",
        DML,
        "attempts = j.attempts + 1,",
        "attempts = j.attempts,",
        QUERIES,
    ),
    mutant(
        "dml.dequeue.no-heartbeat",
        "a claim does not stamp the heartbeat: a job queued long is re-picked at once",
        DML,
        "    heartbeat = {now}, updated = {now}\nFROM chosen",
        "    updated = {now}\nFROM chosen",
        QUERIES,
    ),
    mutant(
        "dml.next-due.latest",
        "an idle worker sleeps until the latest due job instead of the earliest",
        DML,
        "SELECT extract(epoch FROM min(execute_after) - {now})",
        "SELECT extract(epoch FROM max(execute_after) - {now})",
        WORKER,
    ),
    mutant(
        "dml.needs-statistics.inverted",
        "a queue table that holds jobs is never analyzed",
        DML,
        "SELECT reltuples < 0 AND EXISTS (SELECT FROM {jobs})",
        "SELECT reltuples < 0 AND NOT EXISTS (SELECT FROM {jobs})",
        PLAN,
    ),
    # -- sql/dml.py: limits ---------------------------------------------------------------
    mutant(
        "dml.ensure-limit-rows.bucket-empty",
        "a new token bucket starts empty",
        DML,
        "SELECT e, 0, timestamptz '2000-01-01 00:00+00'",
        "SELECT e, 0, {now}",
        LIFECYCLE,
    ),
    mutant(
        "dml.lock-limit-row.unlocked",
        "claims of a limited entrypoint are not serialised (concurrency row lock)",
        DML,
        "FROM {limits} WHERE entrypoint = %(entrypoint)s\nFOR UPDATE\n",
        "FROM {limits} WHERE entrypoint = %(entrypoint)s\n",
        LIFECYCLE,
    ),
    mutant(
        "dml.count-picked.queued",
        "running jobs are counted among queued ones (concurrency bound)",
        DML,
        "WHERE entrypoint = %(entrypoint)s AND status = 'picked'\n",
        "WHERE entrypoint = %(entrypoint)s AND status = 'queued'\n",
        LIFECYCLE,
        AIO,
    ),
    mutant(
        "dml.set-tokens.never-refilled",
        "the bucket's refill time is never moved: it is always full",
        DML,
        "SET tokens = %(tokens)s, refilled = {now} WHERE",
        "SET tokens = %(tokens)s WHERE",
        LIFECYCLE,
    ),
    # -- sql/dml.py: completion ------------------------------------------------------------
    mutant(
        "dml.complete.fence-worker",
        "any worker may complete a job (one half of the fence)",
        DML,
        "    WHERE j.worker_id = %(worker_id)s AND j.status = 'picked'\n    ORDER BY j.id",
        "    WHERE j.status = 'picked'\n    ORDER BY j.id",
        QUERIES,
    ),
    mutant(
        "dml.complete.fence-attempt",
        "any attempt may complete a job (the other half)",
        DML,
        "JOIN done d ON d.id = j.id AND d.attempt = j.attempts",
        "JOIN done d ON d.id = j.id",
        QUERIES,
    ),
    Mutant(
        "dml.complete.no-fence",
        "completion without the fence",
        (
            Edit(
                DML,
                "    SELECT d.* FROM {jobs} j JOIN done d ON d.id = j.id AND d.attempt = "
                "j.attempts\n    WHERE j.worker_id = %(worker_id)s AND j.status = 'picked'",
                "    SELECT d.* FROM {jobs} j JOIN done d ON d.id = j.id\n"
                "    WHERE j.status = 'picked'",
            ),
        ),
        (QUERIES, RETRY_MACHINE),
    ),
    mutant(
        "dml.complete.status-unchecked",
        "a completion does not check the job is still picked",
        DML,
        "    WHERE j.worker_id = %(worker_id)s AND j.status = 'picked'\n    ORDER BY j.id",
        "    WHERE j.worker_id = %(worker_id)s\n    ORDER BY j.id",
        QUERIES,
        LIFECYCLE,
        equivalent="every change that takes a job out of 'picked' (completion, release, "
        "cancel of a queued or failed job) also clears worker_id, so the worker-id check "
        "implies the status check",
    ),
    mutant(
        "dml.complete.no-row-lock",
        "a completion reads its fence from its snapshot, not from the locked row",
        DML,
        "    ORDER BY j.id\n    FOR UPDATE OF j\n",
        "    ORDER BY j.id\n",
        QUERIES,
    ),
    mutant(
        "dml.complete.failed-deleted",
        "failed jobs leave the table instead of staying for inspection and requeue",
        DML,
        "    WHERE j.id = o.id AND o.status NOT IN ('queued', 'failed')",
        "    WHERE j.id = o.id AND o.status NOT IN ('queued')",
        LIFECYCLE,
    ),
    mutant(
        "dml.complete.failed-keeps-worker",
        "a failed job keeps its worker id",
        DML,
        "    SET status = 'failed', worker_id = NULL, last_error",
        "    SET status = 'failed', last_error",
        LIFECYCLE,
    ),
    mutant(
        "dml.complete.failed-not-failed",
        "a job whose policy gave up goes back to the queue",
        DML,
        "    SET status = 'failed', worker_id = NULL, last_error",
        "    SET status = 'queued', worker_id = NULL, last_error",
        LIFECYCLE,
    ),
    mutant(
        "dml.complete.retry-no-backoff",
        "a retried job is due at once (retry backoff)",
        DML,
        "        execute_after = {now} + make_interval(secs => o.delay)",
        "        execute_after = {now}",
        LIFECYCLE,
    ),
    mutant(
        "dml.complete.retry-no-error",
        "a retried job does not keep its last error",
        DML,
        "    SET status = 'queued', worker_id = NULL, last_error = o.traceback, updated = {now},\n"
        "        execute_after",
        "    SET status = 'queued', worker_id = NULL, updated = {now},\n        execute_after",
        LIFECYCLE,
    ),
    mutant(
        "dml.complete.log-without-worker",
        "the log does not say which worker ran the job",
        DML,
        "r.priority, r.attempts, %(worker_id)s,",
        "r.priority, r.attempts, NULL,",
        QUERIES,
    ),
    mutant(
        "dml.complete.done-notify-type",
        "the completion NOTIFY is not a 'done' event",
        DML,
        "                'type', 'done',\n",
        "                'type', 'finished',\n",
        FAST,
    ),
    mutant(
        "dml.complete.done-notify-entrypoints",
        "the completion NOTIFY does not say which entrypoints finished",
        DML,
        "THEN array_agg(DISTINCT entrypoint) END)::text)",
        "THEN ARRAY['?'] END)::text)",
        FAST,
    ),
    mutant(
        "dml.complete.retry-notify",
        "a retried job wakes no idle worker",
        DML,
        "    (SELECT pg_notify({channel}, {requeue_event}) FROM retried HAVING count(*) > 0)",
        "    (SELECT NULL FROM retried HAVING count(*) > 0)",
        FAST,
    ),
    # -- sql/dml.py: heartbeat, release, recorded ------------------------------------------
    mutant(
        "dml.heartbeat.any-worker",
        "a heartbeat refreshes jobs of other workers",
        DML,
        "WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s AND status = 'picked'\n"
        "RETURNING id, cancel_requested",
        "WHERE id = ANY(%(ids)s::bigint[]) AND status = 'picked'\nRETURNING id, cancel_requested",
        QUERIES,
    ),
    mutant(
        "dml.heartbeat.not-refreshed",
        "a heartbeat refreshes nothing",
        DML,
        "UPDATE {jobs} SET heartbeat = {now}\n",
        "UPDATE {jobs} SET heartbeat = heartbeat\n",
        QUERIES,
        FAST,
    ),
    mutant(
        "dml.heartbeat.no-cancel-flag",
        "a heartbeat does not bring cancel requests",
        DML,
        "RETURNING id, cancel_requested\n",
        "RETURNING id, false\n",
        LIFECYCLE,
    ),
    mutant(
        "dml.release.attempt-kept",
        "a release does not give unstarted jobs their attempt back",
        DML,
        "attempts = attempts - CASE WHEN id = ANY(%(unstarted)s::bigint[]) THEN 1 ELSE 0 END",
        "attempts = attempts",
        QUERIES,
        SHUTDOWN,
    ),
    mutant(
        "dml.release.any-worker",
        "a worker releases jobs another worker holds",
        DML,
        "    WHERE id = ANY(%(ids)s::bigint[]) AND worker_id = %(worker_id)s "
        "AND status = 'picked'\n    RETURNING id\n)",
        "    WHERE id = ANY(%(ids)s::bigint[]) AND status = 'picked'\n    RETURNING id\n)",
        QUERIES,
    ),
    mutant(
        "dml.release.notify",
        "a released job wakes no idle worker",
        DML,
        "    (SELECT pg_notify({channel}, {requeue_event}) FROM released HAVING count(*) > 0)"
        " AS notified",
        "    NULL AS notified",
        FAST,
    ),
    mutant(
        "dml.recorded.any-attempt",
        "recorded() counts an outcome of another attempt",
        DML,
        "  ON o.id = l.job_id AND o.attempt = l.attempts\n",
        "  ON o.id = l.job_id\n",
        QUERIES,
    ),
    mutant(
        "dml.recorded.any-worker",
        "recorded() counts another worker's outcome",
        DML,
        "  ON o.id = l.job_id AND o.attempt = l.attempts\nWHERE l.worker_id = %(worker_id)s\n",
        "  ON o.id = l.job_id AND o.attempt = l.attempts\n",
        QUERIES,
    ),
    # -- sql/dml.py: control statements the worker relies on -------------------------------
    mutant(
        "dml.cancel.failed-kept",
        "failed jobs can no longer be cancelled (behaviour 5)",
        DML,
        "    WHERE j.id = t.id AND j.status IN ('queued', 'failed')",
        "    WHERE j.id = t.id AND j.status IN ('queued')",
        LIFECYCLE,
    ),
    mutant(
        "dml.cancel.not-flagged",
        "a running job's cancellation is not recorded in its row",
        DML,
        "    UPDATE {jobs} j SET cancel_requested = true, updated = {now}",
        "    UPDATE {jobs} j SET updated = {now}",
        LIFECYCLE,
    ),
    mutant(
        "dml.cancel.notify-type",
        "the cancel NOTIFY is not a 'cancel' event",
        DML,
        "json_build_object('type', 'cancel', 'ids', array_agg(id))",
        "json_build_object('type', 'stop', 'ids', array_agg(id))",
        FAST,
    ),
    mutant(
        "dml.requeue.attempts-kept",
        "a requeued job keeps its spent attempts",
        DML,
        "    SET status = 'queued', attempts = 0, worker_id = NULL,",
        "    SET status = 'queued', worker_id = NULL,",
        LIFECYCLE,
    ),
    mutant(
        "dml.requeue.notify",
        "a requeued job wakes no idle worker",
        DML,
        "    (SELECT pg_notify({channel}, {requeue_event}) FROM requeued HAVING count(*) > 0)"
        " AS notified",
        "    NULL AS notified",
        FAST,
    ),
    mutant(
        "dml.results.live-jobs",
        "results include jobs that are queued or running again (behaviour 7)",
        DML,
        "  AND NOT EXISTS (SELECT FROM {jobs} j WHERE j.id = l.job_id AND j.status IN "
        "('queued', 'picked'))\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "dml.results.oldest",
        "results give a job's first outcome, not its latest",
        DML,
        "ORDER BY l.job_id, l.id DESC\n",
        "ORDER BY l.job_id, l.id\n",
        LIFECYCLE,
    ),
    mutant(
        "ddl.insert-notify",
        "an insert wakes no idle worker",
        DDL,
        "    PERFORM pg_notify({channel}, {insert_event});\n",
        "",
        FAST,
    ),
    # -- worker_queries.py -----------------------------------------------------------------
    mutant(
        "worker-queries.limit.bound-plus-one",
        "one job more than the concurrency limit (concurrency bound)",
        WORKER_QUERIES,
        "fresh = min(fresh, max(0, concurrency_limit - running))",
        "fresh = min(fresh, max(0, concurrency_limit - running + 1))",
        AIO,
        LIFECYCLE,
    ),
    mutant(
        "worker-queries.rate.no-tokens-spent",
        "claims of a rate-limited entrypoint spend no tokens",
        WORKER_QUERIES,
        "                tokens -= len(jobs)\n",
        "",
        LIFECYCLE,
    ),
    # -- steps.py: the engine's stages -----------------------------------------------------
    mutant(
        "steps.fetch.free-room-ignored",
        "a claim asks for more jobs than the buffer has room for (buffer free room)",
        STEPS,
        "want = min(self.options.claim_size if limit is None else limit, self.buffer.room())",
        "want = self.options.claim_size if limit is None else limit",
        BUFFER_MACHINE,
    ),
    mutant(
        "steps.limit.per-worker-held-ignored",
        "the per-worker limit ignores the jobs already held",
        STEPS,
        "want = min(want, entry.per_worker_limit - held)",
        "want = min(want, entry.per_worker_limit)",
        LIFECYCLE,
    ),
    mutant(
        "steps.hold.cancel-flag-ignored",
        "a job claimed with its cancellation requested still runs (behaviour 4)",
        STEPS,
        "                if job.cancel_requested:\n                    ctx.cancel()\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "steps.run.superseded-runs",
        "an attempt superseded while it waited in the buffer still runs",
        STEPS,
        "            if not self._holds(*key):\n",
        "            if False:\n",
        RETRY_MACHINE,
    ),
    mutant(
        "steps.write.fence-skipped",
        "outcomes of jobs the worker no longer holds are sent to the database",
        STEPS,
        "batch = [o for o in outcomes if self._holds(o.job_id, o.attempt)]",
        "batch = list(outcomes)",
        SHUTDOWN,
        STATEFUL,
        equivalent="the statement's own fence refuses them (their rows are released or "
        "re-picked): the jobs and the log are the same, only a warning differs",
    ),
    mutant(
        "steps.write.no-idle",
        "the fetcher is not told when the worker holds nothing any more",
        STEPS,
        "        if idle:\n            self.mailbox.post(Mailbox.IDLE)\n",
        "",
        FAST,
    ),
    mutant(
        "steps.beat.running-only",
        "heartbeats refresh running jobs only (heartbeat of buffered jobs)",
        STEPS,
        "        ids = set(self.held())\n",
        "        ids = {job.id for job in self.running()}\n",
        FAST,
        BUFFER_MACHINE,
    ),
    mutant(
        "steps.beat.cancels-dropped",
        "a heartbeat does not pass cancel requests on",
        STEPS,
        "        self.cancel([job_id for job_id, requested in alive.items() if requested])\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "steps.cancel.ignored",
        "cancel requests reach no handler",
        STEPS,
        "                ctx.cancel()\n\n    def check_timeouts",
        "                pass\n\n    def check_timeouts",
        LIFECYCLE,
        FAST,
    ),
    mutant(
        "steps.release.attempts-not-forgotten",
        "released jobs stay held",
        STEPS,
        "        released = self.complete_queries.release(self.id, job_ids, unstarted)\n"
        "        self._forget(attempts)\n",
        "        released = self.complete_queries.release(self.id, job_ids, unstarted)\n",
        SHUTDOWN,
        SHUTDOWN_MACHINE,
        equivalent="release is called once, at the end of a run: the jobs are released in "
        "the table either way, and an outcome that comes later is refused by the "
        "statement's fence (its row no longer names this worker)",
    ),
    # -- worker.py: threads and the run loop -----------------------------------------------
    mutant(
        "worker.periodic.no-heartbeat",
        "the flusher never refreshes heartbeats (behaviour 11)",
        WORKER_PY,
        "            self.beat()\n",
        "",
        FAST,
    ),
    mutant(
        "worker.event.cancel-ignored",
        "the cancel NOTIFY is ignored (behaviour 3)",
        WORKER_PY,
        "                self.cancel([i for i in ids if isinstance(i, int)])\n",
        "                pass\n",
        FAST,
    ),
    mutant(
        "worker.event.insert-ignored",
        "an insert NOTIFY wakes no one",
        WORKER_PY,
        "            return\n        self.mailbox.post(Mailbox.WAKE)\n\n    def _on_listen",
        "            return\n\n    def _on_listen",
        FAST,
    ),
    mutant(
        "worker.event.done-ignored",
        "a done NOTIFY does not free a worker held at a global limit",
        WORKER_PY,
        "if self._blocked and self._unblock(names",
        "if False and self._unblock(names",
        FAST,
    ),
    mutant(
        "worker.listen.no-poll",
        "the worker does not poll when its listener (re)connects",
        WORKER_PY,
        "        self._unblock()\n        self.mailbox.post(Mailbox.WAKE)\n",
        "        self._unblock()\n",
        FAULTS_LISTENER,
        FAULTS_BLACKHOLE,
    ),
    mutant(
        "worker.idle.retry-timer-unbounded",
        "the idle sleep is not bounded by retry_timer (idle timeout bound)",
        WORKER_PY,
        "            timeout = min(timeout, self.options.retry_timer.total_seconds())",
        "            timeout = timeout",
        RETRY_MACHINE,
    ),
    mutant(
        "worker.idle.due-ignored",
        "the idle sleep ignores the next due job",
        WORKER_PY,
        "            timeout = min(timeout, max(due, 0.1))",
        "            timeout = timeout",
        WORKER,
    ),
    mutant(
        "worker.shutdown.deadline-ignored",
        "the shutdown waits for running jobs past its deadline",
        WORKER_PY,
        "            if remaining is not None and remaining <= 0:\n                break",
        "            if False:\n                break",
        SHUTDOWN,
    ),
    mutant(
        "worker.shutdown.no-release",
        "release skipped at the shutdown deadline (shutdown release)",
        WORKER_PY,
        "                self.release(unstarted | running, unstarted)",
        "                pass",
        SHUTDOWN,
        SHUTDOWN_MACHINE,
    ),
    mutant(
        "worker.shutdown.unstarted-charged",
        "jobs released at the deadline lose an attempt they never started",
        WORKER_PY,
        "                self.release(unstarted | running, unstarted)",
        "                self.release(unstarted | running, set())",
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
    # -- listener.py -----------------------------------------------------------------------
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
        "listener.deafness-unnoticed",
        "a listener on a black-holed link never notices it hears nothing",
        LISTENER,
        "if self._probe_id is not None and silent > self._deaf_after:",
        "if False:",
        FAULTS_BLACKHOLE,
    ),
    # -- execution.py and retry.py ---------------------------------------------------------
    mutant(
        "execution.cancelled-buffered-runs",
        "a cancelled job that is buffered still runs its handler (behaviour 4)",
        EXECUTION,
        "    if ctx.is_cancelled:\n        return outcome(JobStatus.CANCELED)\n",
        "",
        LIFECYCLE,
    ),
    mutant(
        "execution.cancel-is-exception",
        "a handler that stops on cancellation ends 'exception'",
        EXECUTION,
        "    except JobCancelled:\n        return outcome(JobStatus.CANCELED,",
        "    except JobCancelled:\n        return outcome(JobStatus.EXCEPTION,",
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
    # -- buffer.py -------------------------------------------------------------------------
    mutant(
        "buffer.no-room-signal",
        "a full buffer that gains room does not wake the fetcher",
        BUFFER,
        "        if room == self.watermark and self._on_room is not None:",
        "        if False:",
        UNIT,
        WORKER,
    ),
]
