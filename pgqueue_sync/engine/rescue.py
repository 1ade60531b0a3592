"""Jobs rescued from a worker presumed dead, and the workers lost while running them.

A claim that takes a job from a worker whose heartbeat lapsed marks it ``rescued``; if the
handler of the attempt it lost had recorded that it started, that worker was ``lost`` while
running it (see the ``dequeue`` statement in ``sql/engine.sql``). Before the handler of a
rescued job runs, :meth:`Rescue.before` fails the job once ``max_lost`` is reached, or
records that the handler starts. Jobs never rescued skip all this: the common path pays
nothing per job.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable

from pgqueue_sync.errors import JobLostError, PgQueueError
from pgqueue_sync.models import Job, JobId, JobStatus, Outcome
from pgqueue_sync.registry import Entrypoint

from .buffer import CompletionBuffer
from .ledger import Attempt, Ledger
from .store import Store

__all__ = ["Rescue"]

logger = logging.getLogger(__name__)


class Rescue:
    """The runner's care for rescued jobs (see the module docstring)."""

    def __init__(
        self,
        *,
        worker_id: uuid.UUID,
        store: Store,
        ledger: Ledger,
        completions: CompletionBuffer,
        release: Callable[[set[JobId], set[JobId]], set[JobId]],
        stopping: threading.Event,
    ) -> None:
        self._worker_id = worker_id
        self._store = store
        self._ledger = ledger
        self._completions = completions
        self._release = release
        self._stopping = stopping
        self._lock = threading.Lock()
        # The job counted as lost (suspected of killing its workers) that runs alone here.
        self._suspect: Attempt | None = None

    def before(self, job: Job, entry: Entrypoint | None) -> Outcome | None:
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
        if not self._ledger.holds(*key):
            return None  # superseded: the runner drops it
        limit = None if entry is None else entry.max_lost
        if limit is not None and job.lost >= limit:
            error = JobLostError(
                f"its worker was lost {job.lost} times while running it (max_lost={limit})"
            )
            logger.error("job %d (%s): %s; failed, not run again", job.id, job.entrypoint, error)
            outcome = Outcome(
                job.id, job.attempts, JobStatus.FAILED, 0.0, traceback=f"JobLostError: {error}\n"
            )
            self._ledger.count(failed=1)
            self._completions.add(outcome)
            return outcome
        if limit is not None and job.lost and not self._run_alone(key):
            return self._give_back(job)
        try:
            if self._store.mark_started(self._worker_id, job.id, job.attempts):
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
        self._completions.add(outcome)
        return outcome

    def _run_alone(self, key: Attempt) -> bool:
        """Wait until no other job counted as lost runs here (the one that does is held
        until its outcome is written); False if the worker stops meanwhile."""
        while True:
            with self._lock:
                other = self._suspect
                if other is None or other == key or not self._ledger.holds(*other):
                    self._suspect = key
                    return True
            if self._stopping.wait(0.05):
                return False

    def _give_back(self, job: Job) -> Outcome:
        """Put a job that did not start back in the queue (the worker is stopping)."""
        try:
            self._release({job.id}, {job.id})
        except PgQueueError as exc:
            logger.warning(
                "job %d: could not give it back (%s); it runs after retry_timer", job.id, exc
            )
            self._ledger.forget([(job.id, job.attempts)])
        return Outcome(job.id, job.attempts, JobStatus.CANCELED, 0.0)
