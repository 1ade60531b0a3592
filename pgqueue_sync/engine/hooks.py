"""What a worker tells an observer as it runs: metrics, tracing and tests watch it this way.

Subclass ``WorkerHooks``, override what you need, and hand it to the QueueManager
(``QueueManager(..., hooks=[...])`` or ``qm.add_hooks(...)``). Each method is called in the
engine thread where the thing happens: it must return quickly, and an exception it raises
is logged and ignored (an observer never stops a worker).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING

from pgqueue_sync.models import Job, JobId, Outcome, WorkerStats

if TYPE_CHECKING:
    from .worker import Worker

__all__ = ["HookList", "WorkerHooks"]

logger = logging.getLogger(__name__)


class WorkerHooks:
    """Override any of these; the defaults do nothing."""

    def worker_started(self, worker: Worker) -> None:
        """The worker's threads run and it is about to claim."""

    def claimed(self, jobs: Sequence[Job]) -> None:
        """A claim returned (``jobs`` may be empty). Fetch loop thread."""

    def stop_seen(self) -> None:
        """The fetch loop saw the stop request: it claims nothing more."""

    def job_started(self, job: Job) -> None:
        """A handler starts. Its handler thread."""

    def job_finished(self, job: Job, outcome: Outcome) -> None:
        """A handler ended (``outcome.status``, ``outcome.duration``). Its handler thread."""

    def outcomes_written(self, recorded: Sequence[JobId], fenced: Sequence[JobId]) -> None:
        """Outcomes were written; ``fenced`` ones were discarded (their jobs were re-picked
        by another worker). Flusher thread."""

    def released(self, job_ids: Sequence[JobId]) -> None:
        """Held jobs went back to the queue (shutdown deadline, stuck threads)."""

    def jobs_forgotten(self) -> None:
        """Some jobs stopped being held (written or released)."""

    def shutting_down(self) -> None:
        """The fetch loop ended: the worker lets held jobs finish, then stops."""

    def worker_stopped(self, stats: WorkerStats) -> None:
        """``run()`` is about to return."""


class HookList(WorkerHooks):
    """Several hooks as one: each is called in turn; what one raises is logged."""

    def __init__(self, hooks: Sequence[WorkerHooks] = ()) -> None:
        self.hooks = list(hooks)

    def __bool__(self) -> bool:
        return bool(self.hooks)

    def _each(self, name: str, *args: object) -> None:
        for hook in self.hooks:
            try:
                getattr(hook, name)(*args)
            except Exception:
                logger.exception("worker hook %s.%s failed", type(hook).__name__, name)

    def worker_started(self, worker: Worker) -> None:
        self._each("worker_started", worker)

    def claimed(self, jobs: Sequence[Job]) -> None:
        self._each("claimed", jobs)

    def stop_seen(self) -> None:
        self._each("stop_seen")

    def job_started(self, job: Job) -> None:
        self._each("job_started", job)

    def job_finished(self, job: Job, outcome: Outcome) -> None:
        self._each("job_finished", job, outcome)

    def outcomes_written(self, recorded: Sequence[JobId], fenced: Sequence[JobId]) -> None:
        self._each("outcomes_written", recorded, fenced)

    def released(self, job_ids: Sequence[JobId]) -> None:
        self._each("released", job_ids)

    def jobs_forgotten(self) -> None:
        self._each("jobs_forgotten")

    def shutting_down(self) -> None:
        self._each("shutting_down")

    def worker_stopped(self, stats: WorkerStats) -> None:
        self._each("worker_stopped", stats)
