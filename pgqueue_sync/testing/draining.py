"""``drain()``: run every due job now, in the calling thread, and report how each ended."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, TypeAlias

from pgqueue_sync.clock import Clock
from pgqueue_sync.db import Driver
from pgqueue_sync.engine.stepper import Stepper
from pgqueue_sync.errors import PgQueueError
from pgqueue_sync.qm import QueueManager
from pgqueue_sync.registry import Entrypoint
from pgqueue_sync.settings import Settings

from .outcomes import Capture, JobOutcome

if TYPE_CHECKING:
    from pgqueue_sync_aio import AsyncQueueManager

__all__ = ["AnyManager", "DrainLimitError", "Manager", "drain", "drain_queue", "split"]

AnyManager: TypeAlias = "QueueManager | AsyncQueueManager"


def split(manager: AnyManager) -> tuple[QueueManager, AsyncQueueManager | None]:
    """The QueueManager that holds the queries and registry, and the async one around it."""
    if isinstance(manager, QueueManager):
        return manager, None
    return manager.sync, manager


class DrainLimitError(PgQueueError, RuntimeError):
    """``drain()`` ran more than ``max_jobs`` jobs (a job that enqueues another forever, or
    one retried without a wait?). ``outcomes`` holds those it ran."""

    def __init__(self, message: str, outcomes: list[JobOutcome]) -> None:
        super().__init__(message)
        self.outcomes = outcomes


class Manager(Protocol):
    """A QueueManager or an AsyncQueueManager: what drain() needs of one."""

    @property
    def driver(self) -> Driver:
        """Where the queue's database is."""

    @property
    def settings(self) -> Settings:
        """Where the queue is in it (schema, prefix) and its limits."""

    @property
    def clock(self) -> Clock:
        """The manager's clock."""

    @property
    def entrypoints(self) -> dict[str, Entrypoint]:
        """The handlers, by entrypoint name."""


def drain(
    manager: Manager, *, raise_errors: bool = False, max_jobs: int = 1000
) -> list[JobOutcome]:
    """Run every job that is due in ``manager``'s queue with its handlers, one after the
    other in the calling thread, until none is due; return how each ended, in the order run.

    Jobs that handlers enqueue meanwhile, and retries due at once, run too; deferred jobs
    (``execute_after`` in the future) and retries with a wait stay queued. Each job goes
    through the real engine (claimed, run, its outcome written: ``wait_for``, ``history``
    and ``qm.queries`` see it), without the worker's threads. ``raise_errors=True`` re-raises
    the first exception a handler raised (after writing the outcomes of that step), instead
    of only reporting it.

    ``async def`` handlers (of an AsyncQueueManager) run on a new event loop, or, when
    ``drain`` is called through ``anyio.to_thread.run_sync`` from async code, on that
    code's loop. Handler timeouts are not enforced: the calling thread cannot be abandoned.

    Args:
        manager: a ``QueueManager`` or ``AsyncQueueManager`` with its handlers registered
            (the ``pgqueue`` fixture's, or your application's pointed at a test schema).
        raise_errors: re-raise the first exception a handler raised. Default False.
        max_jobs: the most jobs it runs before giving up. Default 1000.

    Returns:
        One [`JobOutcome`][pgqueue_sync.testing.JobOutcome] per job run, in the order run.

    Raises:
        DrainLimitError: more than ``max_jobs`` jobs came (jobs that never stop coming).
    """
    return drain_queue(
        manager,
        driver=manager.driver,
        settings=manager.settings,
        raise_errors=raise_errors,
        max_jobs=max_jobs,
    )


def drain_queue(
    manager: Manager,
    *,
    driver: Driver,
    settings: Settings,
    raise_errors: bool = False,
    max_jobs: int = 1000,
) -> list[JobOutcome]:
    """``drain``, with ``manager``'s handlers, on the queue of ``driver`` and
    ``settings`` (a test's own queue)."""
    capture = Capture(manager.entrypoints)
    outcomes: list[JobOutcome] = []
    with Stepper(
        driver=driver, settings=settings, clock=manager.clock, registry=capture.registry
    ) as stepper:
        while True:
            ran = stepper.step()
            if not ran:
                return outcomes
            step = [capture.outcome(job, outcome) for job, outcome in ran]
            outcomes += step
            if raise_errors:
                for outcome in step:
                    if outcome.error is not None:
                        raise outcome.error
            if len(outcomes) > max_jobs:
                raise DrainLimitError(
                    f"drain() ran {len(outcomes)} jobs, more than max_jobs={max_jobs}: a "
                    "job that enqueues another forever, or one retried without a wait?",
                    outcomes,
                )
