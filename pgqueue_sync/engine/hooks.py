"""What a worker tells an observer as it runs: metrics, tracing and tests watch it this way.

Subclass ``WorkerHooks``, override what you need, and hand it to the QueueManager
(``QueueManager(..., hooks=[...])`` or ``qm.add_hooks(...)``). Each method is called in the
engine thread where the thing happens: it must return quickly, and an exception it raises
is logged and ignored (an observer never stops a worker).
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Sequence
from types import TracebackType
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
        """A claim returned (``jobs`` may be empty). The fetch loop's thread, or the
        listener's (it claims while the fetch loop sleeps)."""

    def stop_seen(self) -> None:
        """The fetch loop saw the stop request: it claims nothing more."""

    def job_scope(self, job: Job) -> contextlib.AbstractContextManager[None] | None:
        """A context manager the handler thread enters before ``job_started`` and leaves
        after ``job_finished`` (or after the handler returned too late, past its timeout),
        whatever happens; or None. Tracing makes the job's span current this way."""
        return None

    def job_started(self, job: Job) -> None:
        """A handler starts. Its handler thread."""

    def job_finished(self, job: Job, outcome: Outcome) -> None:
        """A handler ended (``outcome.status``, ``outcome.duration``). Its handler thread."""

    def job_timed_out(self, job: Job, outcome: Outcome) -> None:
        """A handler ran past its entrypoint's timeout: its job ends with ``outcome`` (the
        handler's thread is abandoned; ``job_finished`` is not called). Flusher thread."""

    def reconnected(self, connection: str) -> None:
        """One of the worker's connections (``fetch``, ``complete`` or ``listen``) was lost
        and is open again. The thread that reopened it."""

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

    def job_scope(self, job: Job) -> contextlib.AbstractContextManager[None] | None:
        scopes: list[contextlib.AbstractContextManager[None]] = []
        for hook in self.hooks:
            try:
                scope = hook.job_scope(job)
            except Exception:
                logger.exception("worker hook %s.job_scope failed", type(hook).__name__)
                continue
            if scope is not None:
                scopes.append(scope)
        return _Scopes(scopes) if scopes else None

    def job_started(self, job: Job) -> None:
        self._each("job_started", job)

    def job_finished(self, job: Job, outcome: Outcome) -> None:
        self._each("job_finished", job, outcome)

    def job_timed_out(self, job: Job, outcome: Outcome) -> None:
        self._each("job_timed_out", job, outcome)

    def reconnected(self, connection: str) -> None:
        self._each("reconnected", connection)

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


class _Scopes(contextlib.AbstractContextManager[None]):
    """Hooks' job scopes entered in turn and left in reverse; what one raises is logged
    (and one that failed to enter is not left)."""

    def __init__(self, scopes: list[contextlib.AbstractContextManager[None]]) -> None:
        self._scopes = scopes
        self._entered: list[contextlib.AbstractContextManager[None]] = []

    def __enter__(self) -> None:
        for scope in self._scopes:
            try:
                scope.__enter__()
            except Exception:
                logger.exception("entering the job scope of %s failed", type(scope).__name__)
            else:
                self._entered.append(scope)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        while self._entered:
            scope = self._entered.pop()
            try:
                scope.__exit__(exc_type, exc, tb)
            except Exception:
                logger.exception("leaving the job scope of %s failed", type(scope).__name__)
