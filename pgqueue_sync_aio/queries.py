"""AsyncQueries: each method of :class:`pgqueue_sync.Queries`, awaitable.

Every call runs the sync method in a worker thread (``anyio.to_thread.run_sync``) under a
``CapacityLimiter`` sized to the connections the driver can use at once, so callers queue on
the event loop instead of filling threads that would only wait for a connection. A cancelled
call still lets its statement finish in the thread (a connection is never left mid-query),
then raises the cancellation.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta
from functools import partial
from typing import Any, TypeVar

import anyio
import anyio.to_thread
import psycopg
from anyio.lowlevel import EventLoopToken, current_token

from pgqueue_sync.admin_models import (
    EntrypointStatus,
    JobDetail,
    JobPage,
    MinuteRates,
    PausedEntrypoint,
    QueueMetrics,
    RequeueResult,
    WorkerInfo,
)
from pgqueue_sync.clock import Clock
from pgqueue_sync.db import Connection, Driver, PsycopgDriver
from pgqueue_sync.enqueue import EnqueueHooks, OnConflict, Payload, When
from pgqueue_sync.errors import ConfigurationError
from pgqueue_sync.models import (
    CancelResult,
    Job,
    JobId,
    JobResult,
    JobStatus,
    LogEntry,
    QueueStatistic,
    ScheduleInfo,
)
from pgqueue_sync.queries import Queries
from pgqueue_sync.settings import Settings
from pgqueue_sync.waiting import wait_for

__all__ = ["AsyncQueries", "connections_of"]

T = TypeVar("T")


def connections_of(driver: Driver) -> int:
    """How many calls ``driver`` serves at once (a pool's size; else one connection)."""
    return driver.max_connections if isinstance(driver, PsycopgDriver) else 1


class LoopLimiter:
    """A ``CapacityLimiter`` of ``total`` tokens for the running event loop.

    An anyio limiter belongs to one event loop; this makes a fresh one when it is first used
    from another loop (a module-level manager reused across ``anyio.run`` calls, tests).
    """

    def __init__(self, total: int) -> None:
        if total < 1:
            raise ConfigurationError("a limiter needs at least one token (max_threads >= 1)")
        self.total = total
        self._token: EventLoopToken | None = None
        self._limiter: anyio.CapacityLimiter | None = None

    def get(self) -> anyio.CapacityLimiter:
        token = current_token()
        if self._limiter is None or self._token != token:
            self._limiter = anyio.CapacityLimiter(self.total)
            self._token = token
        return self._limiter


class AsyncQueries:
    """The queue's database operations, awaitable. ``AsyncQueueManager.queries`` is one.

    ``AsyncQueries(Queries(driver, settings))`` gives a producer-only async client.
    """

    def __init__(self, queries: Queries, *, max_threads: int | None = None) -> None:
        self.sync = queries
        self._limiter = LoopLimiter(
            connections_of(queries.driver) if max_threads is None else max_threads
        )

    @property
    def driver(self) -> Driver:
        return self.sync.driver

    @property
    def settings(self) -> Settings:
        return self.sync.settings

    @property
    def clock(self) -> Clock:
        return self.sync.clock

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The limiter of the running event loop's calls."""
        return self._limiter.get()

    async def _run(self, call: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(call, limiter=self._limiter.get())

    # -- schema --------------------------------------------------------------------------

    async def install(self) -> int:
        return await self._run(self.sync.install)

    async def uninstall(self) -> None:
        return await self._run(self.sync.uninstall)

    async def verify(self) -> int:
        return await self._run(self.sync.verify)

    async def upgrade(self) -> list[int]:
        return await self._run(self.sync.upgrade)

    async def installed_version(self) -> int | None:
        return await self._run(self.sync.installed_version)

    # -- producers -----------------------------------------------------------------------

    def add_enqueue_hooks(self, hooks: EnqueueHooks) -> None:
        """:meth:`pgqueue_sync.Queries.add_enqueue_hooks` (the hooks run in the thread that
        enqueues, in the caller's context: context variables, the current span, go along)."""
        self.sync.add_enqueue_hooks(hooks)

    async def enqueue(
        self,
        entrypoint: str | Sequence[str],
        payload: Payload | Sequence[Payload] = None,
        priority: int | Sequence[int] = 0,
        execute_after: When | Sequence[When] = None,
        *,
        dedupe_key: str | Sequence[str | None] | None = None,
        on_conflict: OnConflict = "raise",
        headers: Mapping[str, Any] | Sequence[Mapping[str, Any] | None] | None = None,
        connection: Connection | psycopg.Cursor[Any] | None = None,
    ) -> list[JobId]:
        return await self._run(
            partial(
                self.sync.enqueue,
                entrypoint,
                payload,
                priority,
                execute_after,
                dedupe_key=dedupe_key,
                on_conflict=on_conflict,
                headers=headers,
                connection=connection,
            )
        )

    # -- control -------------------------------------------------------------------------

    async def cancel(self, job_ids: Collection[JobId]) -> CancelResult:
        return await self._run(partial(self.sync.cancel, job_ids))

    async def requeue(self, job_ids: Collection[JobId]) -> list[JobId]:
        return await self._run(partial(self.sync.requeue, job_ids))

    async def wait_for(
        self, job_ids: Sequence[JobId], timeout: timedelta | float | None = None
    ) -> list[JobResult]:
        """As the sync one; it waits on a connection of its own, outside the limiter. If
        the awaiting task is cancelled, the waiting thread closes its connection and ends
        within a fraction of a second."""
        stop = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                partial(wait_for, self.sync, job_ids, timeout, stop), abandon_on_cancel=True
            )
        finally:
            stop.set()

    # -- inspection ----------------------------------------------------------------------

    async def queue_size(self) -> list[QueueStatistic]:
        return await self._run(self.sync.queue_size)

    async def clear_queue(self, entrypoint: str | Sequence[str] | None = None) -> int:
        return await self._run(partial(self.sync.clear_queue, entrypoint))

    async def history(
        self,
        limit: int = 100,
        *,
        entrypoint: str | Sequence[str] | None = None,
        status: JobStatus | str | Sequence[JobStatus | str] | None = None,
        job_ids: Sequence[JobId] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[LogEntry]:
        return await self._run(
            partial(
                self.sync.history,
                limit,
                entrypoint=entrypoint,
                status=status,
                job_ids=job_ids,
                since=since,
                until=until,
            )
        )

    log = history  # the same, under the name of the log table

    async def get_jobs(self, job_ids: Collection[JobId]) -> list[Job]:
        return await self._run(partial(self.sync.get_jobs, job_ids))

    async def prune_log(self, older_than: timedelta, batch_size: int = 10_000) -> int:
        return await self._run(partial(self.sync.prune_log, older_than, batch_size))

    async def notify(self, payload: str) -> None:
        return await self._run(partial(self.sync.notify, payload))

    # -- operators -----------------------------------------------------------------------

    async def status(self) -> list[EntrypointStatus]:
        return await self._run(self.sync.status)

    async def workers(self) -> list[WorkerInfo]:
        return await self._run(self.sync.workers)

    async def queue_metrics(self) -> QueueMetrics:
        return await self._run(self.sync.queue_metrics)

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        entrypoint: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> JobPage:
        return await self._run(
            partial(
                self.sync.list_jobs,
                status=status,
                entrypoint=entrypoint,
                limit=limit,
                cursor=cursor,
            )
        )

    async def job_detail(self, job_id: JobId) -> JobDetail:
        return await self._run(partial(self.sync.job_detail, job_id))

    async def rates(self, minutes: int = 60, *, entrypoint: str | None = None) -> list[MinuteRates]:
        return await self._run(partial(self.sync.rates, minutes, entrypoint=entrypoint))

    async def paused(self) -> list[PausedEntrypoint]:
        return await self._run(self.sync.paused)

    async def requeue_failed(
        self, job_ids: Collection[JobId] | None = None, *, entrypoint: str | None = None
    ) -> RequeueResult:
        return await self._run(partial(self.sync.requeue_failed, job_ids, entrypoint=entrypoint))

    async def pause(
        self, entrypoints: str | Sequence[str], *, reason: str | None = None
    ) -> list[str]:
        return await self._run(partial(self.sync.pause, entrypoints, reason=reason))

    async def resume(self, entrypoints: str | Sequence[str]) -> list[str]:
        return await self._run(partial(self.sync.resume, entrypoints))

    async def purge(
        self,
        statuses: Sequence[JobStatus | str] = ("queued",),
        *,
        entrypoint: str | None = None,
    ) -> int:
        return await self._run(partial(self.sync.purge, statuses, entrypoint=entrypoint))

    # -- schedules -----------------------------------------------------------------------

    async def schedules(self, names: Sequence[str] | None = None) -> list[ScheduleInfo]:
        return await self._run(partial(self.sync.schedules, names))

    async def pause_schedule(self, name: str) -> None:
        return await self._run(partial(self.sync.pause_schedule, name))

    async def resume_schedule(self, name: str) -> datetime:
        return await self._run(partial(self.sync.resume_schedule, name))

    async def run_schedule(self, name: str) -> JobId:
        return await self._run(partial(self.sync.run_schedule, name))

    async def remove_schedule(self, name: str) -> None:
        return await self._run(partial(self.sync.remove_schedule, name))
