"""Jobs rescued from a worker presumed dead, and the workers lost while running them.

A claim that takes a job from a worker whose heartbeat lapsed marks it ``rescued``; if the
handler of the attempt it lost had recorded that it started, that worker was ``lost`` while
running it (see ``DEQUEUE`` in :mod:`pgqueue_sync.sql.dml`). Before the handler of a rescued
job runs, :func:`before_rescued` (called by ``WorkerSteps.run_job``) fails the job once
``max_lost`` is reached, or records that the handler starts. Jobs never rescued skip all
this: the common path pays nothing per job.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from .errors import JobLostError, PgQueueError
from .models import Job, JobId, JobStatus
from .worker_queries import Outcome

if TYPE_CHECKING:
    from .steps import WorkerSteps

__all__ = ["before_rescued"]

logger = logging.getLogger("pgqueue_sync")


def before_rescued(steps: WorkerSteps, job: Job) -> Outcome | None:
    """Before the handler of a job taken from a worker presumed dead: fail the job if
    workers were lost running it ``max_lost`` times; else record that its handler
    starts, so that if this worker is lost too, the next claim counts it. Returns the
    outcome queued instead of running the handler, or None to run it.

    Only rescued jobs (rare) pay this synchronous write; a job that was only buffered
    when its worker died never recorded a start, so it is never counted as lost. A job
    already counted (``lost > 0``) runs only when no other such job runs here, so that
    when one of them takes the worker down, it alone is counted.
    """
    key = (job.id, job.attempts)
    with steps._lock:
        if not steps._holds(*key):
            return None  # superseded: run_job drops it
    entry = steps.registry.get(job.entrypoint)
    limit = None if entry is None else entry.max_lost
    if limit is not None and job.lost >= limit:
        error = JobLostError(
            f"its worker was lost {job.lost} times while running it (max_lost={limit})"
        )
        logger.error("job %d (%s): %s; failed, not run again", job.id, job.entrypoint, error)
        outcome = Outcome(
            job.id, job.attempts, JobStatus.FAILED, 0.0, traceback=f"JobLostError: {error}\n"
        )
        with steps._lock:
            steps.stats.failed += 1
        steps.completions.add(outcome)
        return outcome
    if limit is not None and job.lost and not _run_alone(steps, key):
        return _give_back(steps, job)
    try:
        if steps.complete_queries.mark_started(steps.id, job.id, job.attempts):
            return None
    except PgQueueError as exc:
        logger.warning(
            "job %d: could not record that its handler starts (%s); running it anyway "
            "(a loss of this worker now would not be counted)",
            job.id,
            exc,
        )
        return None
    # Re-claimed by another worker meanwhile: not run; the write is fenced out.
    outcome = Outcome(job.id, job.attempts, JobStatus.CANCELED, 0.0)
    steps.completions.add(outcome)
    return outcome


def _run_alone(steps: WorkerSteps, key: tuple[JobId, int]) -> bool:
    """Wait until no other job counted as lost runs here (the one that does is held until
    its outcome is written); False if the worker stops meanwhile."""
    while True:
        with steps._lock:
            other = steps._suspect
            if other is None or other == key or not steps._holds(*other):
                steps._suspect = key
                return True
        if steps.shutdown_event.wait(0.05):
            return False


def _give_back(steps: WorkerSteps, job: Job) -> Outcome:
    """Put a job that did not start back in the queue (the worker is stopping)."""
    try:
        steps.release({job.id}, {job.id})
    except PgQueueError as exc:
        logger.warning(
            "job %d: could not give it back (%s); it runs after retry_timer", job.id, exc
        )
        steps._forget([(job.id, job.attempts)])
    return Outcome(job.id, job.attempts, JobStatus.CANCELED, 0.0)
