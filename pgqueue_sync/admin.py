"""The operator's API: see the queue and repair it.

``Queries`` inherits these, so ``qm.queries.status()``,
``qm.queries.pause("emails")`` and the rest work wherever a queue is at hand; the
``pgq-sync`` commands, a dashboard and a metrics collector all call them. Each returns
typed, frozen rows (``pgqueue_sync.admin_models``), which
``jsonable`` turns into JSON.

Every read is safe on a large queue: ``status`` reads the queue table once and the log of
the last minute; listings walk one index in order and stop after a page.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from psycopg.rows import dict_row

from .admin_models import (
    EntrypointBacklog,
    EntrypointStatus,
    JobDetail,
    JobPage,
    JobSummary,
    MinuteRates,
    PausedEntrypoint,
    QueueMetrics,
    RequeueResult,
    WorkerInfo,
)
from .errors import ConfigurationError, JobNotFoundError
from .models import Job, JobId, JobStatus, LogEntry
from .querying import QueryBase
from .settings import validate_entrypoint

__all__ = ["LISTABLE", "PURGEABLE", "AdminQueries"]

# What a listing can be filtered on (None: every job in the queue table).
LISTABLE = ("queued", "picked", "failed", "successful", "exception", "canceled")
# What purge may delete: never a running job.
PURGEABLE = ("queued", "failed")
MAX_PAGE = 10_000
# How far back rates() reads, in minutes (a day).
MAX_RATE_MINUTES = 1440
# The statement that lists a page of jobs, by the status listed (None: every job in the
# queue table).
_PAGES = {
    None: "list_live",
    "queued": "list_queued",
    "picked": "list_picked",
    "failed": "list_failed",
    "successful": "list_successful",
    "exception": "list_problems",
    "canceled": "list_problems",
}


def _names(entrypoints: str | Sequence[str]) -> list[str]:
    names = [entrypoints] if isinstance(entrypoints, str) else list(entrypoints)
    return sorted({validate_entrypoint(name) for name in names})


def _status(value: JobStatus | str) -> str:
    try:
        return str(JobStatus(value))
    except ValueError:
        known = ", ".join(s.value for s in JobStatus)
        raise ConfigurationError(f"unknown job status {value!r} (one of {known})") from None


def _ids(job_ids: Collection[JobId]) -> list[JobId]:
    ids = set(job_ids)
    bad = [i for i in ids if isinstance(i, bool) or not isinstance(i, int)]
    if bad:
        raise ConfigurationError(f"job ids are integers, not {bad[0]!r}")
    return sorted(ids)


class AdminQueries(QueryBase):
    """Inspection and repair of the queue (mixed into Queries)."""

    # -- seeing ----------------------------------------------------------------------------

    def status(self) -> list[EntrypointStatus]:
        """Per entrypoint: jobs queued (due now), deferred, picked, failed; outcomes and
        failures written and jobs enqueued in the last minute; how long the oldest due job
        has waited; the mean pick-up latency; whether it is paused."""
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.status, self._params())
            return [EntrypointStatus.from_row(row) for row in cur.fetchall()]

    def queue_metrics(self) -> QueueMetrics:
        """What a metrics scrape reads, in one statement: per entrypoint, live jobs by state
        and the age of the oldest due one (one pass over the queue table); live and lost
        workers."""
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.queue_metrics, self._params())
            rows = cur.fetchall()
        backlog = tuple(
            EntrypointBacklog(
                row["entrypoint"],
                row["queued"],
                row["deferred"],
                row["picked"],
                row["failed"],
                row["oldest_waiting_seconds"],
            )
            for row in rows
            if row["entrypoint"] is not None
        )
        first = rows[0] if rows else {"workers_live": 0, "workers_lost": 0}
        return QueueMetrics(backlog, first["workers_live"], first["workers_lost"])

    def workers(self) -> list[WorkerInfo]:
        """The workers registry: running workers, and lost ones (no heartbeat for longer
        than their ``retry_timer``), oldest first."""
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.workers, self._params())
            return [WorkerInfo.from_row(row) for row in cur.fetchall()]

    def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        entrypoint: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> JobPage:
        """A page of jobs, newest first.

        Without ``status``: every job in the queue table (queued, picked, failed). With
        ``queued``, ``picked`` or ``failed``: those in the queue table; with
        ``successful``, ``exception`` or ``canceled``: outcomes from the log. Pass the
        page's ``next_cursor`` as ``cursor`` for the next page.
        """
        key = None if status is None else _status(status)
        if key is not None and key not in LISTABLE:
            raise ConfigurationError(f"cannot list jobs by status {key!r}")
        if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_PAGE:
            raise ConfigurationError(f"limit must be an int from 1 to {MAX_PAGE}")
        if cursor is not None and (isinstance(cursor, bool) or not isinstance(cursor, int)):
            raise ConfigurationError("cursor must be an int (a page's next_cursor)")
        if entrypoint is not None:
            validate_entrypoint(entrypoint)
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(
                getattr(self._sql, _PAGES[key]),
                {
                    "cursor": cursor,
                    "entrypoint": entrypoint,
                    "status": key,
                    "limit": limit + 1,
                },
            )
            rows = [JobSummary.from_row(row) for row in cur.fetchall()]
        more = len(rows) > limit
        rows = rows[:limit]
        return JobPage(rows, rows[-1].cursor if more else None)

    def job_detail(self, job_id: JobId) -> JobDetail:
        """Every field of a job still in the queue, and every outcome logged for it.
        JobNotFoundError if it is in neither."""
        [job_id] = _ids([job_id])
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.get_jobs, {"ids": [job_id]})
            row = cur.fetchone()
            job = None if row is None else Job.from_row(row)
            cur.execute(self._sql.log_of_job, {"id": job_id})
            log = [LogEntry.from_row(r) for r in cur.fetchall()]
        if job is None and not log:
            raise JobNotFoundError(f"no job with id {job_id} in the queue or log")
        return JobDetail(job_id, job, log)

    def rates(self, minutes: int = 60, *, entrypoint: str | None = None) -> list[MinuteRates]:
        """The queue's traffic per minute over the last ``minutes`` (the current, partial
        minute last), of ``entrypoint`` or all: jobs enqueued, outcomes written, failures,
        mean pick-up latency. One row per minute, oldest first, zeros included.

        Reads the log of those minutes through its index on ``created`` and the queue table
        once (as ``status`` does): a dashboard reads the hour once, then the last minutes.
        """
        if (
            isinstance(minutes, bool)
            or not isinstance(minutes, int)
            or not 1 <= minutes <= MAX_RATE_MINUTES
        ):
            raise ConfigurationError(f"minutes must be an int from 1 to {MAX_RATE_MINUTES}")
        if entrypoint is not None:
            validate_entrypoint(entrypoint)
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.rates, self._params(minutes=minutes, entrypoint=entrypoint))
            return [MinuteRates.from_row(row) for row in cur.fetchall()]

    def paused(self) -> list[PausedEntrypoint]:
        """The paused entrypoints."""
        with self._conn() as conn, conn.cursor(row_factory=dict_row) as cur:
            cur.execute(self._sql.paused)
            return [PausedEntrypoint(**row) for row in cur.fetchall()]

    # -- repairing -------------------------------------------------------------------------

    def requeue_failed(
        self, job_ids: Collection[JobId] | None = None, *, entrypoint: str | None = None
    ) -> RequeueResult:
        """Put failed jobs back in the queue with a fresh count of attempts: those among
        ``job_ids``, or every failed job (of ``entrypoint``, if given). The result says
        which ids were not requeued, and why."""
        if job_ids is None:
            if entrypoint is not None:
                validate_entrypoint(entrypoint)
            requeued, _ = self._row(self._sql.requeue_all_failed, entrypoint=entrypoint)
            return RequeueResult(sorted(requeued or []))
        if entrypoint is not None:
            raise ConfigurationError("pass job ids or an entrypoint, not both")
        ids = _ids(job_ids)
        requeued, live, logged, _ = self._row(self._sql.requeue_ids, ids=ids)
        done = set(requeued or ())
        still = set(live or ())
        finished = set(logged or ()) - done - still
        unknown = set(ids) - done - still - finished
        return RequeueResult(sorted(done), sorted(still), sorted(finished), sorted(unknown))

    def pause(self, entrypoints: str | Sequence[str], *, reason: str | None = None) -> list[str]:
        """Pause entrypoints: no worker claims their jobs until they are resumed (jobs are
        still enqueued). Workers give back the jobs of these entrypoints they hold but have
        not started. Returns the entrypoints that were not paused already."""
        names = _names(entrypoints)
        if reason is not None and not isinstance(reason, str):
            raise ConfigurationError("reason must be a str")
        paused, _ = self._row(self._sql.pause, entrypoints=names, reason=reason)
        return list(paused or [])

    def resume(self, entrypoints: str | Sequence[str]) -> list[str]:
        """Resume paused entrypoints; returns those that were paused."""
        resumed, _ = self._row(self._sql.resume, entrypoints=_names(entrypoints))
        return list(resumed or [])

    def purge(
        self,
        statuses: Sequence[JobStatus | str] = ("queued",),
        *,
        entrypoint: str | None = None,
    ) -> int:
        """Delete jobs in these statuses (``queued``, deferred ones included, and
        ``failed``), of ``entrypoint`` or all, without running them; return how many."""
        keys = sorted({_status(s) for s in statuses})
        refused = [k for k in keys if k not in PURGEABLE]
        if refused or not keys:
            raise ConfigurationError(
                f"purge deletes jobs that are {' or '.join(PURGEABLE)}, not {refused or keys}"
            )
        if entrypoint is not None:
            validate_entrypoint(entrypoint)
        with self._conn() as conn, conn.cursor() as cur:
            cur.execute(self._sql.purge, {"statuses": keys, "entrypoint": entrypoint})
            return cur.rowcount
