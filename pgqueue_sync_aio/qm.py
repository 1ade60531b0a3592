"""AsyncQueueManager: the sync engine, awaited, with ``async def`` handlers on the caller's loop.

There is one engine, ``pgqueue_sync.QueueManager``'s. ``await qm.run()`` runs it in a
worker thread; its handler threads hand ``async def`` handlers over to the event loop that
awaits ``run()`` (``anyio.from_thread.run``, in ``.handlers``) and wait for them, so a
handler can use the application's async clients. ``workers`` bounds how many handlers run at
once, async or not.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeVar

import anyio
import anyio.from_thread
import anyio.to_thread
from anyio.lowlevel import current_token

from pgqueue_sync.clock import Clock
from pgqueue_sync.cron import DEFAULT_CATCH_UP_LIMIT, CatchUp
from pgqueue_sync.db import Driver
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.hooks import WorkerHooks
from pgqueue_sync.errors import AlreadyRunningError, HandlerAbandoned
from pgqueue_sync.models import WorkerStats
from pgqueue_sync.options import Mode
from pgqueue_sync.qm import QueueManager
from pgqueue_sync.registry import DEFAULT_MAX_LOST, Entrypoint, is_async_callable
from pgqueue_sync.retry import RetryPolicy
from pgqueue_sync.settings import Settings

from .handlers import LoopBridge
from .queries import AsyncQueries
from .tasks import AsyncTasks

__all__ = ["AsyncQueueManager", "HandlerAbandoned"]

F = TypeVar("F", bound=Callable[..., Any])


class AsyncQueueManager(AsyncTasks):
    """``pgqueue_sync.QueueManager`` for asyncio and trio applications.

    ```python
    qm = AsyncQueueManager(PsycopgDriver(psycopg.connect(autocommit=True)))

    @qm.entrypoint("fetch")
    async def fetch(job: Job) -> None: ...   # runs on this event loop

    await qm.queries.enqueue("fetch", b"payload")
    await qm.run()                # until qm.alive = False, or cancelled
    ```

    Cancelling ``await qm.run()`` shuts down as ``qm.alive = False`` does (stop fetching,
    finish held jobs, or release them past ``shutdown_timeout``), then re-raises.
    ``qm.sync`` is the wrapped ``pgqueue_sync.QueueManager``.
    """

    def __init__(
        self,
        driver: Driver,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        check_entrypoints: bool = True,
        hooks: Sequence[WorkerHooks] = (),
    ) -> None:
        self.sync = QueueManager(
            driver,
            settings=settings,
            clock=clock,
            check_entrypoints=check_entrypoints,
            hooks=hooks,
        )
        self.queries = AsyncQueries(self.sync.queries)
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._running = False
        # Runs the async handlers, called from the handler threads, on the loop of run().
        self._bridge = LoopBridge(on_interrupt=self._interrupt)

    @property
    def driver(self) -> Driver:
        """The driver given (the wrapped manager's)."""
        return self.sync.driver

    def add_hooks(self, hooks: WorkerHooks) -> None:
        """Observe the runs that start from now on with ``hooks`` (in the engine's threads)."""
        self.sync.add_hooks(hooks)

    @property
    def stats(self) -> WorkerStats | None:
        """The counters of the current run, live; of the last run once it has returned."""
        return self.sync.stats

    @property
    def settings(self) -> Settings:
        """The settings in force (the wrapped manager's)."""
        return self.sync.settings

    @property
    def check_entrypoints(self) -> bool:
        """Whether enqueue refuses entrypoints with no handler here (once any is registered)."""
        return self.sync.check_entrypoints

    @property
    def clock(self) -> Clock:
        """The time source (the wrapped manager's)."""
        return self.sync.clock

    @property
    def last_stats(self) -> WorkerStats | None:
        """The counters of the last ``run()``."""
        return self.sync.last_stats

    @property
    def stuck_threads(self) -> int:
        """Handler threads of the current run still busy with a job that timed out."""
        return self.sync.stuck_threads

    @property
    def worker_class(self) -> type[Worker]:
        """The engine ``run()`` builds (the sync manager's ``worker_class``)."""
        return self.sync.worker_class

    @worker_class.setter
    def worker_class(self, value: type[Worker]) -> None:
        self.sync.worker_class = value

    # -- registry ------------------------------------------------------------------------

    def entrypoint(
        self,
        name: str,
        *,
        retry: RetryPolicy | None = None,
        concurrency_limit: int | None = None,
        per_worker_limit: int | None = None,
        requests_per_second: float | None = None,
        timeout: timedelta | float | None = None,
        max_lost: int | None = DEFAULT_MAX_LOST,
    ) -> Callable[[F], F]:
        """Register a handler for jobs of entrypoint ``name``: ``async def`` handlers run on
        the event loop awaiting ``run()``, plain ``def`` ones in the handler threads.

        The handler is called as ``handler(job)``, or ``handler(job, context)`` if it takes
        two positional parameters; its return value is kept in the log. The policies are
        those of ``pgqueue_sync.QueueManager.entrypoint``. When the job is cancelled (or
        times out), an async handler is cancelled, and its job ends ``canceled``.
        """
        # Validates now, as the sync one does.
        register = self.sync.entrypoint(
            name,
            retry=retry,
            concurrency_limit=concurrency_limit,
            per_worker_limit=per_worker_limit,
            requests_per_second=requests_per_second,
            timeout=timeout,
            max_lost=max_lost,
        )
        return self._registering(register, name)

    def periodic(
        self,
        expression: str,
        *,
        name: str | None = None,
        timezone: str = "UTC",
        catch_up: CatchUp = "latest",
        catch_up_limit: int = DEFAULT_CATCH_UP_LIMIT,
        priority: int = 0,
        payload: bytes | None = None,
        retry: RetryPolicy | None = None,
        concurrency_limit: int | None = None,
        per_worker_limit: int | None = None,
        requests_per_second: float | None = None,
        timeout: timedelta | float | None = None,
        max_lost: int | None = DEFAULT_MAX_LOST,
    ) -> Callable[[F], F]:
        """Register a handler (``async def`` or plain) and a schedule that enqueues one of its
        jobs at every tick: ``pgqueue_sync.QueueManager.periodic``, on this event loop."""
        # Validates now, as the sync one does.
        register = self.sync.periodic(
            expression,
            name=name,
            timezone=timezone,
            catch_up=catch_up,
            catch_up_limit=catch_up_limit,
            priority=priority,
            payload=payload,
            retry=retry,
            concurrency_limit=concurrency_limit,
            per_worker_limit=per_worker_limit,
            requests_per_second=requests_per_second,
            timeout=timeout,
            max_lost=max_lost,
        )
        return self._registering(register, name)

    def _registering(self, register: Callable[[Any], object], name: str | None) -> Callable[[F], F]:
        """A decorator that hands ``register`` (the sync manager's) a handler the engine can
        call: an ``async def`` one runs on this loop (under its own name when ``name`` is
        None)."""

        def decorate(func: F) -> F:
            register(self._bridge.stand_in(func) if is_async_callable(func) else func)
            self._handlers[getattr(func, "__name__", "") if name is None else name] = func
            return func

        return decorate

    @property
    def entrypoints(self) -> dict[str, Entrypoint]:
        """The registered entrypoints by name (a copy), tasks and periodic ones included."""
        return {
            name: dataclasses.replace(entry, func=self._handlers.get(name, entry.func))
            for name, entry in self.sync.entrypoints.items()
        }

    def _interrupt(self) -> None:
        self.sync.alive = False

    # -- alive ---------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True until a shutdown is requested. Set it to False to stop ``run()``."""
        return self.sync.alive

    @alive.setter
    def alive(self, value: bool) -> None:
        self.sync.alive = value

    # -- run -----------------------------------------------------------------------------

    async def run(
        self,
        dequeue_timeout: timedelta | float = timedelta(seconds=30),
        batch_size: int = 10,
        retry_timer: timedelta | float | None = timedelta(minutes=1),
        workers: int | None = None,
        buffer_size: int | None = None,
        shutdown_timeout: timedelta | float | None = None,
        mode: Mode = "continuous",
        heartbeat_interval: timedelta | float | None = None,
        log_retention: timedelta | float | None = None,
    ) -> None:
        """Fetch and run jobs until ``qm.alive`` is set to False, or the task is cancelled.

        The engine runs in threads; the event loop only runs the ``async def`` handlers. On
        cancellation it stops fetching, lets held jobs finish (past ``shutdown_timeout`` it
        releases them and cancels async handlers still running), then re-raises the
        cancellation. A ``KeyboardInterrupt`` in an async handler (Ctrl-C on trio) fails
        that job and ends ``run()`` the same way, then is raised by it.

        Args:
            dequeue_timeout: as in [`QueueManager.run`][pgqueue_sync.QueueManager.run]:
                the longest idle wait before looking again. Default 30 s.
            batch_size: jobs claimed per query. Default 10.
            retry_timer: re-pick ``picked`` jobs whose heartbeat is older than this; None
                disables it. Default 1 minute.
            workers: handler threads (plain ``def`` handlers run there; ``async def`` ones
                on the loop). Default ``min(32, cpu_count + 4)``.
            buffer_size: most jobs claimed and not yet started. Default
                ``2 * max(batch_size, workers)``.
            shutdown_timeout: how long held jobs may take once stopping before the rest is
                released. Default None: wait for them all.
            mode: ``"continuous"`` (default), or ``"drain"`` to return once no job is due.
            heartbeat_interval: default ``retry_timer / 5``, at most 10 s.
            log_retention: prune log rows older than this. Default None: keep them all.

        Raises:
            AlreadyRunningError: ``run()`` is already running on this manager.
            ConfigurationError: an option is invalid, before anything starts.
        """
        if self._running:
            raise AlreadyRunningError("run() is already running on this AsyncQueueManager")
        self._running = True
        token = current_token()
        self._bridge.open(token)
        finished = anyio.Event()
        # "pending" until the engine thread starts; a cancellation that comes first makes
        # it "skipped" (anyio may still start the thread, which then returns at once).
        state = ["pending"]
        state_lock = threading.Lock()

        def engine() -> None:
            with state_lock:
                if state[0] != "pending":
                    return
                state[0] = "running"
            try:
                self.sync.run(
                    dequeue_timeout=dequeue_timeout,
                    batch_size=batch_size,
                    retry_timer=retry_timer,
                    workers=workers,
                    buffer_size=buffer_size,
                    shutdown_timeout=shutdown_timeout,
                    mode=mode,
                    heartbeat_interval=heartbeat_interval,
                    log_retention=log_retention,
                )
            finally:
                with contextlib.suppress(anyio.RunFinishedError):
                    anyio.from_thread.run_sync(finished.set, token=token)

        try:
            # abandon_on_cancel only lets this task see a cancellation at once; the engine
            # thread is never left behind: it is waited for below.
            await anyio.to_thread.run_sync(
                engine, abandon_on_cancel=True, limiter=anyio.CapacityLimiter(1)
            )
        except BaseException:
            with state_lock:
                if state[0] == "pending":
                    state[0] = "skipped"
            if not finished.is_set():
                self.sync.alive = False  # cancelled (or interrupted): shut down gracefully
            raise
        finally:
            if state[0] == "running":
                # Shielded, and awaited: the loop keeps running the async handlers that the
                # engine still hands over while it shuts down.
                with anyio.CancelScope(shield=True):
                    await finished.wait()
                    await self._bridge.abandon()
            self._bridge.close()
            self._running = False
        if self._bridge.interrupted:
            raise KeyboardInterrupt
