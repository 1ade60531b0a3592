"""AsyncQueries: each method of ``pgqueue_sync.Queries``, awaitable.

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
        """The driver of the wrapped ``Queries``."""
        return self.sync.driver

    @property
    def settings(self) -> Settings:
        """The settings of the wrapped ``Queries``."""
        return self.sync.settings

    @property
    def clock(self) -> Clock:
        """The clock of the wrapped ``Queries``."""
        return self.sync.clock

    @property
    def limiter(self) -> anyio.CapacityLimiter:
        """The limiter of the running event loop's calls."""
        return self._limiter.get()

    async def _run(self, call: Callable[[], T]) -> T:
        return await anyio.to_thread.run_sync(call, limiter=self._limiter.get())

    # -- schema --------------------------------------------------------------------------

    async def install(self) -> int:
        """[`Queries.install`][pgqueue_sync.Queries.install], awaited."""
        return await self._run(self.sync.install)

    async def uninstall(self) -> None:
        """[`Queries.uninstall`][pgqueue_sync.Queries.uninstall], awaited."""
        return await self._run(self.sync.uninstall)

    async def verify(self) -> int:
        """[`Queries.verify`][pgqueue_sync.Queries.verify], awaited."""
        return await self._run(self.sync.verify)

    async def upgrade(self) -> list[int]:
        """[`Queries.upgrade`][pgqueue_sync.Queries.upgrade], awaited."""
        return await self._run(self.sync.upgrade)

    async def installed_version(self) -> int | None:
        """[`Queries.installed_version`][pgqueue_sync.Queries.installed_version], awaited."""
        return await self._run(self.sync.installed_version)

    # -- producers -----------------------------------------------------------------------

    def add_enqueue_hooks(self, hooks: EnqueueHooks) -> None:
        """[`Queries.add_enqueue_hooks`][pgqueue_sync.Queries.add_enqueue_hooks] (the hooks run
        in the thread that enqueues, in the caller's context: context variables, the current
        span, go along)."""
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
        """[`Queries.enqueue`][pgqueue_sync.Queries.enqueue], awaited."""
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
        """[`Queries.cancel`][pgqueue_sync.Queries.cancel], awaited."""
        return await self._run(partial(self.sync.cancel, job_ids))

    async def requeue(self, job_ids: Collection[JobId]) -> list[JobId]:
        """[`Queries.requeue`][pgqueue_sync.Queries.requeue], awaited."""
        return await self._run(partial(self.sync.requeue, job_ids))

    async def wait_for(
        self, job_ids: Sequence[JobId], timeout: timedelta | float | None = None
    ) -> list[JobResult]:
        """Wait until these jobs have finished; return their results, in the same order.

        As [`Queries.wait_for`][pgqueue_sync.Queries.wait_for]; it waits on a connection
        of its own, outside the limiter. If the awaiting task is cancelled, the waiting
        thread closes its connection and ends within a fraction of a second.

        Args:
            job_ids: the jobs to wait for.
            timeout: the longest wait, in seconds or a ``timedelta``; None (default): as
                long as it takes.

        Returns:
            One ``JobResult`` per id, in the order of ``job_ids``.

        Raises:
            JobNotFoundError: an id is neither queued nor logged.
            WaitTimeoutError: ``timeout`` ran out; its ``finished`` holds the jobs that did
                finish.
        """
        stop = threading.Event()
        try:
            return await anyio.to_thread.run_sync(
                partial(wait_for, self.sync, job_ids, timeout, stop), abandon_on_cancel=True
            )
        finally:
            stop.set()

    # -- inspection ----------------------------------------------------------------------

    async def queue_size(self) -> list[QueueStatistic]:
        """[`Queries.queue_size`][pgqueue_sync.Queries.queue_size], awaited."""
        return await self._run(self.sync.queue_size)

    async def clear_queue(self, entrypoint: str | Sequence[str] | None = None) -> int:
        """[`Queries.clear_queue`][pgqueue_sync.Queries.clear_queue], awaited."""
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
        """[`Queries.history`][pgqueue_sync.Queries.history], awaited."""
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
        """[`Queries.get_jobs`][pgqueue_sync.Queries.get_jobs], awaited."""
        return await self._run(partial(self.sync.get_jobs, job_ids))

    async def prune_log(self, older_than: timedelta, batch_size: int = 10_000) -> int:
        """[`Queries.prune_log`][pgqueue_sync.Queries.prune_log], awaited."""
        return await self._run(partial(self.sync.prune_log, older_than, batch_size))

    async def notify(self, payload: str) -> None:
        """[`Queries.notify`][pgqueue_sync.Queries.notify], awaited."""
        return await self._run(partial(self.sync.notify, payload))

    # -- operators -----------------------------------------------------------------------

    async def status(self) -> list[EntrypointStatus]:
        """[`Queries.status`][pgqueue_sync.Queries.status], awaited."""
        return await self._run(self.sync.status)

    async def workers(self) -> list[WorkerInfo]:
        """[`Queries.workers`][pgqueue_sync.Queries.workers], awaited."""
        return await self._run(self.sync.workers)

    async def queue_metrics(self) -> QueueMetrics:
        """[`Queries.queue_metrics`][pgqueue_sync.Queries.queue_metrics], awaited."""
        return await self._run(self.sync.queue_metrics)

    async def list_jobs(
        self,
        *,
        status: JobStatus | str | None = None,
        entrypoint: str | None = None,
        limit: int = 50,
        cursor: int | None = None,
    ) -> JobPage:
        """[`Queries.list_jobs`][pgqueue_sync.Queries.list_jobs], awaited."""
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
        """[`Queries.job_detail`][pgqueue_sync.Queries.job_detail], awaited."""
        return await self._run(partial(self.sync.job_detail, job_id))

    async def rates(self, minutes: int = 60, *, entrypoint: str | None = None) -> list[MinuteRates]:
        """[`Queries.rates`][pgqueue_sync.Queries.rates], awaited."""
        return await self._run(partial(self.sync.rates, minutes, entrypoint=entrypoint))

    async def paused(self) -> list[PausedEntrypoint]:
        """[`Queries.paused`][pgqueue_sync.Queries.paused], awaited."""
        return await self._run(self.sync.paused)

    async def requeue_failed(
        self, job_ids: Collection[JobId] | None = None, *, entrypoint: str | None = None
    ) -> RequeueResult:
        """[`Queries.requeue_failed`][pgqueue_sync.Queries.requeue_failed], awaited."""
        return await self._run(partial(self.sync.requeue_failed, job_ids, entrypoint=entrypoint))

    async def pause(
        self, entrypoints: str | Sequence[str], *, reason: str | None = None
    ) -> list[str]:
        """[`Queries.pause`][pgqueue_sync.Queries.pause], awaited."""
        return await self._run(partial(self.sync.pause, entrypoints, reason=reason))

    async def resume(self, entrypoints: str | Sequence[str]) -> list[str]:
        """[`Queries.resume`][pgqueue_sync.Queries.resume], awaited."""
        return await self._run(partial(self.sync.resume, entrypoints))

    async def purge(
        self,
        statuses: Sequence[JobStatus | str] = ("queued",),
        *,
        entrypoint: str | None = None,
    ) -> int:
        """[`Queries.purge`][pgqueue_sync.Queries.purge], awaited."""
        return await self._run(partial(self.sync.purge, statuses, entrypoint=entrypoint))

    # -- schedules -----------------------------------------------------------------------

    async def schedules(self, names: Sequence[str] | None = None) -> list[ScheduleInfo]:
        """[`Queries.schedules`][pgqueue_sync.Queries.schedules], awaited."""
        return await self._run(partial(self.sync.schedules, names))

    async def pause_schedule(self, name: str) -> None:
        """[`Queries.pause_schedule`][pgqueue_sync.Queries.pause_schedule], awaited."""
        return await self._run(partial(self.sync.pause_schedule, name))

    async def resume_schedule(self, name: str) -> datetime:
        """[`Queries.resume_schedule`][pgqueue_sync.Queries.resume_schedule], awaited."""
        return await self._run(partial(self.sync.resume_schedule, name))

    async def run_schedule(self, name: str) -> JobId:
        """[`Queries.run_schedule`][pgqueue_sync.Queries.run_schedule], awaited."""
        return await self._run(partial(self.sync.run_schedule, name))

    async def remove_schedule(self, name: str) -> None:
        """[`Queries.remove_schedule`][pgqueue_sync.Queries.remove_schedule], awaited."""
        return await self._run(partial(self.sync.remove_schedule, name))
