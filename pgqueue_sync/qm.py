"""QueueManager: the entrypoint registry, ``run()``, and ``alive``."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, ParamSpec, TypeVar, overload

from .clock import Clock, SystemClock
from .cron import DEFAULT_CATCH_UP_LIMIT, CatchUp, Schedule
from .db import Driver
from .engine.buffer import Mailbox
from .engine.hooks import HookList, WorkerHooks
from .engine.worker import Worker
from .errors import AlreadyRunningError, ConfigurationError, InvalidHandlerError, InvalidStateError
from .models import WorkerStats
from .options import Mode, RunOptions
from .queries import Queries
from .registry import (
    DEFAULT_MAX_LOST,
    Entrypoint,
    Policies,
    entrypoint,
    is_async_callable,
    policies,
)
from .retry import RetryPolicy
from .settings import Settings, validate_entrypoint
from .task_arguments import TaskSignature
from .tasks import Task, task_handler

__all__ = ["QueueManager"]

logger = logging.getLogger(__name__)

F = TypeVar("F", bound=Callable[..., Any])
P = ParamSpec("P")
R = TypeVar("R")


def _default_workers() -> int:
    return min(32, (os.cpu_count() or 1) + 4)


class QueueManager:
    """Runs plain ``def`` handlers for jobs from a PostgreSQL queue, in a thread pool.

    ```python
    qm = QueueManager(PsycopgDriver(psycopg.connect(autocommit=True)))

    @qm.entrypoint("fetch")
    def fetch(job: Job) -> None: ...

    qm.queries.enqueue("fetch", b"payload")
    qm.run()                      # blocks until qm.alive = False
    ```

    ``qm.alive = False`` (from a signal handler or any thread) asks ``run()`` to stop
    gracefully: it stops fetching, lets running and buffered jobs finish, writes their
    outcomes, closes its connections and returns.

    Args:
        driver: how to reach PostgreSQL: a [`PsycopgDriver`][pgqueue_sync.PsycopgDriver].
            Producer calls use it; a running worker opens three connections of its own
            from the same settings and closes them when ``run()`` returns.
        settings: the schema, table prefix and payload limit; default
            ``Settings.from_env()`` (``PGQUEUE_SCHEMA``, ``PGQUEUE_PREFIX``,
            ``PGQUEUE_MAX_PAYLOAD_BYTES``).
        clock: the time source; default a [`SystemClock`][pgqueue_sync.SystemClock].
        check_entrypoints: with handlers registered, ``enqueue`` refuses entrypoints that
            have none (``UnknownEntrypointError``). A producer that enqueues for other
            services passes False, or registers nothing.
        hooks: [`WorkerHooks`][pgqueue_sync.engine.hooks.WorkerHooks] that observe every
            run (metrics, tracing); ``add_hooks`` adds more.

    Attributes:
        driver: the driver given.
        settings: the settings in force.
        clock: the time source.
        queries: the queue's database operations ([`Queries`][pgqueue_sync.Queries]).
        check_entrypoints: whether ``enqueue`` refuses entrypoints with no handler here.
        last_stats: the counters of the last ``run()`` once it has returned; None before.
        worker_class: the engine ``run()`` builds.
    """

    worker_class: type[Worker] = Worker

    def __init__(
        self,
        driver: Driver,
        *,
        settings: Settings | None = None,
        clock: Clock | None = None,
        check_entrypoints: bool = True,
        hooks: Sequence[WorkerHooks] = (),
    ) -> None:
        self.driver = driver
        self._hooks: list[WorkerHooks] = list(hooks)
        self.settings = settings if settings is not None else Settings.from_env()
        self.clock: Clock = clock if clock is not None else SystemClock()
        self._registry: dict[str, Entrypoint] = {}
        # Whether enqueue refuses entrypoints with no handler here (once any is registered).
        self.check_entrypoints = check_entrypoints
        self.queries = Queries(
            driver,
            self.settings,
            clock=self.clock,
            known_entrypoints=self._registry.keys if check_entrypoints else None,
        )
        # Set means "stop". Only is_set() is called from the thread that runs run(), so a
        # signal handler setting it there cannot deadlock on the Event's lock.
        self._shutdown = threading.Event()
        self._mailbox = Mailbox()
        self._running = threading.Lock()
        self._worker: Worker | None = None
        self.last_stats: WorkerStats | None = None

    def add_hooks(self, hooks: WorkerHooks) -> None:
        """Observe the runs that start from now on with ``hooks``.

        Args:
            hooks: the observer; its methods are called from the worker's threads.
        """
        self._hooks.append(hooks)

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
        """Register a plain ``def`` handler for jobs of entrypoint ``name``; a decorator.

        The handler is called as ``handler(job)``, or ``handler(job, ctx)`` if it takes two
        positional parameters (``ctx``: the job's [`Context`][pgqueue_sync.Context]). Its
        return value (``bytes``, or anything JSON can encode) is kept in the log as the
        job's result.

        ```python
        @qm.entrypoint("fetch", retry=RetryPolicy(stop=stop_after_attempt(5)), timeout=30)
        def fetch(job: Job) -> None: ...
        ```

        Args:
            name: the entrypoint's name: a letter or ``_``, then letters, digits and
                ``_.:-``, at most 128 characters.
            retry: a [`RetryPolicy`][pgqueue_sync.RetryPolicy]; a failed attempt goes back
                to the queue after its backoff and the job ends ``failed`` when the policy
                gives up. Default: no retry (a failed attempt ends ``exception``).
            concurrency_limit: at most this many jobs of the entrypoint run at once across
                all workers (exact: claims of limited entrypoints are serialised). Default:
                no limit.
            per_worker_limit: at most this many held by one worker. Default: no limit.
            requests_per_second: at most this many starts per second across all workers.
                Default: no limit.
            timeout: seconds (or a ``timedelta``) after which a running job is failed with
                a ``JobTimeoutError`` (its thread cannot be killed; it is left to finish and
                counted as stuck). Default: none.
            max_lost: a job whose worker was lost (killed, crashed) while running it more
                than this many times is failed with a ``JobLostError`` instead of run again
                (default 3; None: run it again however often its worker dies).

        Returns:
            A decorator that registers the function and returns it unchanged.

        Raises:
            InvalidEntrypointError: ``name`` is not a valid entrypoint name.
            ConfigurationError: ``name`` is already registered, or a policy is invalid.
            InvalidHandlerError: the function is ``async def`` (use ``AsyncQueueManager``)
                or cannot take a job.
        """
        self._check_free(name)
        rules = policies(
            retry=retry,
            concurrency_limit=concurrency_limit,
            per_worker_limit=per_worker_limit,
            requests_per_second=requests_per_second,
            timeout=timeout,
            max_lost=max_lost,
        )
        return self._registrar(name, rules)

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
        """Register a handler and a schedule whose every tick enqueues one job of it.

        Each job is due at its tick. Each tick is enqueued once, whatever the number of
        workers that declare the schedule. Needs croniter
        (``pip install -e ".[cron]"``).

        ```python
        @qm.periodic("*/5 * * * *", timezone="Europe/Paris")
        def refresh(job: Job) -> None: ...
        ```

        Args:
            expression: a cron expression (croniter's: five fields, or six with seconds
                last).
            name: the entrypoint's (and the schedule's) name; default: the function's.
            timezone: the IANA time zone ``expression`` is read in.
            catch_up: the ticks that fell while no worker ran: ``"latest"`` enqueues the
                most recent one, ``"none"`` none, ``"all"`` each of them (the
                ``catch_up_limit`` most recent).
            catch_up_limit: with ``catch_up="all"``, how many missed ticks at most.
            priority: the priority of every job.
            payload: the payload of every job (bytes, or None).
            retry: as in [`entrypoint`][pgqueue_sync.QueueManager.entrypoint].
            concurrency_limit: as in ``entrypoint``.
            per_worker_limit: as in ``entrypoint``.
            requests_per_second: as in ``entrypoint``.
            timeout: as in ``entrypoint``.
            max_lost: as in ``entrypoint``.

        Returns:
            A decorator that registers the function and returns it unchanged.

        Raises:
            MissingDependencyError: croniter is not installed.
            ConfigurationError: an invalid expression, time zone or option (the message
                says why), or a name already registered.
        """
        if name is not None:
            self._check_free(name)
        schedule = Schedule.build(
            name if name is not None else "unnamed",  # named when it decorates a handler
            expression,
            timezone=timezone,
            catch_up=catch_up,
            catch_up_limit=catch_up_limit,
            priority=priority,
            payload=payload,
            max_payload_bytes=self.settings.max_payload_bytes,
        )
        rules = policies(
            retry=retry,
            concurrency_limit=concurrency_limit,
            per_worker_limit=per_worker_limit,
            requests_per_second=requests_per_second,
            timeout=timeout,
            max_lost=max_lost,
        )
        return self._registrar(name, rules, schedule)

    def _check_free(self, name: str) -> None:
        validate_entrypoint(name)
        if name in self._registry:
            raise ConfigurationError(f"entrypoint {name!r} is already registered")

    def _registrar(
        self, name: str | None, rules: Policies, schedule: Schedule | None = None
    ) -> Callable[[F], F]:
        """The decorator that registers a handler as entrypoint ``name`` (None: under its
        function's name, checked then), with its checked policies and schedule."""

        def register(func: F) -> F:
            entry: str = getattr(func, "__name__", "") if name is None else name
            if name is None:
                self._check_free(entry)
            if is_async_callable(func):
                raise InvalidHandlerError(
                    f"entrypoint {entry!r}: {getattr(func, '__name__', func)!r} is an async "
                    "function; QueueManager runs plain def handlers in threads. Use "
                    "pgqueue_sync_aio.AsyncQueueManager to run async def handlers"
                )
            self._registry[entry] = entrypoint(entry, func, rules, schedule)
            return func

        return register

    @overload
    def task(self, func: Callable[P, R], /) -> Task[P, R]: ...

    @overload
    def task(
        self,
        func: None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        concurrency_limit: int | None = None,
        per_worker_limit: int | None = None,
        requests_per_second: float | None = None,
        timeout: timedelta | float | None = None,
        max_lost: int | None = DEFAULT_MAX_LOST,
    ) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(
        self,
        func: Callable[P, R] | None = None,
        /,
        *,
        name: str | None = None,
        retry: RetryPolicy | None = None,
        concurrency_limit: int | None = None,
        per_worker_limit: int | None = None,
        requests_per_second: float | None = None,
        timeout: timedelta | float | None = None,
        max_lost: int | None = DEFAULT_MAX_LOST,
    ) -> Task[P, R] | Callable[[Callable[P, R]], Task[P, R]]:
        """Make a plain ``def`` function a task: ``@qm.task`` or ``@qm.task(name=..., ...)``.

        ``task.enqueue(*args, **kwargs)`` enqueues a job that calls the function with those
        arguments, checked against its signature and carried as JSON; the worker calls it
        with them, and its return value is the job's result. A parameter annotated
        [`Context`][pgqueue_sync.Context] receives the job's Context (it is not an
        argument); ``current_context()`` works too. Calling the task runs the function
        inline.

        ```python
        @qm.task(retry=RetryPolicy(stop=stop_after_attempt(5)), timeout=30)
        def send_email(to: str, subject: str) -> str: ...

        job_id = send_email.enqueue("a@example.com", "hi")
        ```

        Args:
            func: the function, when used as ``@qm.task`` without parentheses.
            name: the entrypoint's name; default: the function's ``__name__``.
            retry: as in [`entrypoint`][pgqueue_sync.QueueManager.entrypoint].
            concurrency_limit: as in ``entrypoint``.
            per_worker_limit: as in ``entrypoint``.
            requests_per_second: as in ``entrypoint``.
            timeout: as in ``entrypoint``.
            max_lost: as in ``entrypoint``.

        Returns:
            The [`Task`][pgqueue_sync.Task] (or, called with options only, a decorator
                that makes one).

        Raises:
            InvalidHandlerError: the function is ``async def`` (use ``AsyncQueueManager``),
                or a parameter cannot be carried (``*args`` of a Context, ...).
            ConfigurationError: the name is already registered, or a policy is invalid.
        """

        def register(function: Callable[P, R]) -> Task[P, R]:
            if is_async_callable(function):
                raise InvalidHandlerError(
                    f"task {getattr(function, '__name__', function)!r} is an async function; "
                    "QueueManager runs plain def functions in threads. Use "
                    "pgqueue_sync_aio.AsyncQueueManager.task for async def tasks"
                )
            task_name = name if name is not None else getattr(function, "__name__", "")
            signature = TaskSignature.of(task_name, function)
            self.entrypoint(
                task_name,
                retry=retry,
                concurrency_limit=concurrency_limit,
                per_worker_limit=per_worker_limit,
                requests_per_second=requests_per_second,
                timeout=timeout,
                max_lost=max_lost,
            )(task_handler(signature, function))
            return Task(function, signature, lambda: self.queries)

        return register if func is None else register(func)

    @property
    def entrypoints(self) -> dict[str, Entrypoint]:
        """The registered entrypoints by name (a copy), tasks and periodic ones included."""
        return dict(self._registry)

    @property
    def stats(self) -> WorkerStats | None:
        """The counters of the current run (claimed, succeeded, failed, ...), live; of the
        last run once it has returned; None before the first."""
        worker = self._worker
        return worker.stats if worker is not None else self.last_stats

    @property
    def stuck_threads(self) -> int:
        """Handler threads of the current run still busy with a job that timed out."""
        worker = self._worker
        return 0 if worker is None else worker.stuck_threads

    # -- alive ---------------------------------------------------------------------------

    @property
    def alive(self) -> bool:
        """True until a shutdown is requested. Set it to False to stop ``run()``."""
        return not self._shutdown.is_set()

    @alive.setter
    def alive(self, value: bool) -> None:
        if value:
            if self._worker is not None and self._shutdown.is_set():
                raise InvalidStateError("cannot set alive = True while run() is stopping")
            self._shutdown.clear()
        else:
            self._shutdown.set()
            self._mailbox.post(Mailbox.STOP)

    # -- run -----------------------------------------------------------------------------

    def run(
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
        """Fetch and run jobs until ``qm.alive`` is set to False; blocks.

        The worker opens three connections of its own (listen, fetch, complete) and closes
        them when it returns. Every duration is seconds (``int``/``float``) or a
        ``timedelta``, finite and at most ten years.

        Args:
            dequeue_timeout: the longest an idle worker waits before looking again, in
                seconds (NOTIFY wakes it at once when jobs arrive). Default 30 s.
            batch_size: jobs claimed per query. Default 10.
            retry_timer: a job ``picked`` by a worker whose heartbeat is older than this is
                re-picked (its worker is dead or frozen); None disables it (0 is refused).
                Default 1 minute.
            workers: handler threads. Default ``min(32, cpu_count + 4)``.
            buffer_size: most jobs claimed and not yet started. Default
                ``2 * max(batch_size, workers)``.
            shutdown_timeout: after ``alive = False``, how long running and buffered jobs
                may take before what is left goes back to the queue, in seconds. Default
                None: wait for them all.
            mode: ``"continuous"`` (default), or ``"drain"`` to return once no job is due.
            heartbeat_interval: how often the heartbeats of held jobs are refreshed, in
                seconds. Default ``retry_timer / 5``, at most 10 s.
            log_retention: prune log rows older than this (every minute, in batches).
                Default None: keep them all.

        Raises:
            ConfigurationError: an option is invalid (NaN, negative, zero where zero would
                disable what it paces, an unknown mode, ...), before anything starts.
            AlreadyRunningError: ``run()`` is already running on this manager.
            SchemaNotInstalledError: the queue's tables are not installed.
            SchemaVersionError: the installed schema is older or newer than this library.
            ConnectError: the worker's connections could not be opened.
        """
        options = RunOptions.build(
            dequeue_timeout=dequeue_timeout,
            batch_size=batch_size,
            retry_timer=retry_timer,
            workers=_default_workers() if workers is None else workers,
            buffer_size=buffer_size,
            shutdown_timeout=shutdown_timeout,
            mode=mode,
            heartbeat_interval=heartbeat_interval,
            log_retention=log_retention,
        )
        if not self._running.acquire(blocking=False):
            raise AlreadyRunningError("run() is already running on this QueueManager")
        try:
            if self._shutdown.is_set():
                logger.warning(
                    "run() called with qm.alive = False: returning at once "
                    "(set qm.alive = True to run again)"
                )
                return
            self._mailbox.drain()
            self._worker = self.worker_class(
                driver=self.driver,
                settings=self.settings,
                clock=self.clock,
                registry=self._registry,
                options=options,
                shutdown=self._shutdown,
                mailbox=self._mailbox,
                hooks=HookList(self._hooks),
            )
            try:
                self._worker.run()
            finally:
                self.last_stats = self._worker.stats
                self._worker = None
        finally:
            self._running.release()
