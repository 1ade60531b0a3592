"""AsyncTask: a task of an ``AsyncQueueManager``, enqueued with
``await``; an ``async def`` task runs on the event loop that awaits ``run()``.

Arguments, results and options are those of ``pgqueue_sync.tasks.Task``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ParamSpec, Protocol, TypeVar, overload

import psycopg

from pgqueue_sync.context import Context
from pgqueue_sync.db import Connection
from pgqueue_sync.enqueue import OnConflict, When
from pgqueue_sync.models import Job, JobId
from pgqueue_sync.registry import DEFAULT_MAX_LOST, is_async_callable
from pgqueue_sync.retry import RetryPolicy
from pgqueue_sync.task_arguments import TaskSignature, decode_arguments
from pgqueue_sync.tasks import TaskBase, task_handler

from .queries import AsyncQueries

__all__ = ["AsyncTask", "AsyncTasks", "async_task_handler"]

P = ParamSpec("P")
R = TypeVar("R")
F = TypeVar("F", bound=Callable[..., Any])


def async_task_handler(
    signature: TaskSignature, func: Callable[..., Any]
) -> Callable[[Job, Context], Any]:
    """The entrypoint handler of a task on the async manager: an ``async def`` one for an
    ``async def`` function (run on the event loop), a plain one otherwise (run in the
    handler threads)."""
    if not is_async_callable(func):
        return task_handler(signature, func)

    async def run_task(job: Job, ctx: Context) -> Any:
        args, kwargs = decode_arguments(signature.name, job.payload)
        call_args, call_kwargs = signature.call_arguments(args, kwargs, ctx)
        return await func(*call_args, **call_kwargs)

    run_task.__name__ = getattr(func, "__name__", run_task.__name__)
    run_task.__qualname__ = getattr(func, "__qualname__", run_task.__qualname__)
    return run_task


class AsyncTask(TaskBase[P, R]):
    """A task of an AsyncQueueManager (made by ``@qm.task``): ``await task.enqueue(...)``.

    Calling it runs the function inline (for an ``async def`` task, the call returns the
    coroutine to await).
    """

    def __init__(
        self,
        func: Callable[P, R],
        signature: TaskSignature,
        queries: Callable[[], AsyncQueries],
    ) -> None:
        super().__init__(func, signature)
        self._queries = queries

    async def enqueue(
        self,
        *args: Any,
        priority: int = 0,
        execute_after: When = None,
        dedupe_key: str | None = None,
        on_conflict: OnConflict = "raise",
        headers: Mapping[str, Any] | None = None,
        connection: Connection | psycopg.Cursor[Any] | None = None,
        **kwargs: Any,
    ) -> JobId:
        """Enqueue a job that calls the task with ``*args`` and ``**kwargs``; its id. As
        ``pgqueue_sync.tasks.Task.enqueue``, awaited."""
        self._refuse_collisions()
        return await self.enqueue_with(
            args,
            kwargs,
            priority=priority,
            execute_after=execute_after,
            dedupe_key=dedupe_key,
            on_conflict=on_conflict,
            headers=headers,
            connection=connection,
        )

    async def enqueue_with(
        self,
        args: Sequence[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        priority: int = 0,
        execute_after: When = None,
        dedupe_key: str | None = None,
        on_conflict: OnConflict = "raise",
        headers: Mapping[str, Any] | None = None,
        connection: Connection | psycopg.Cursor[Any] | None = None,
    ) -> JobId:
        """``enqueue``, with the task's arguments as a sequence and a mapping."""
        queries = self._queries()
        payload = self.payload(args, kwargs or {}, queries.settings.max_payload_bytes)
        [job_id] = await queries.enqueue(
            self.name,
            payload,
            priority,
            execute_after,
            dedupe_key=dedupe_key,
            on_conflict=on_conflict,
            headers=headers,
            connection=connection,
        )
        return job_id


class _Registers(Protocol):
    """What AsyncTasks needs of the manager it is mixed into."""

    queries: AsyncQueries

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
    ) -> Callable[[F], F]: ...


class AsyncTasks:
    """``task()``, the decorator of ``AsyncQueueManager`` (a mixin:
    it registers through the manager's ``entrypoint`` and enqueues on its ``queries``)."""

    @overload
    def task(self, func: Callable[P, R], /) -> AsyncTask[P, R]: ...

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
    ) -> Callable[[Callable[P, R]], AsyncTask[P, R]]: ...

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
    ) -> AsyncTask[P, R] | Callable[[Callable[P, R]], AsyncTask[P, R]]:
        """Make a function a task: ``@qm.task`` or ``@qm.task(name=..., ...)``, as
        ``pgqueue_sync.QueueManager.task``, with ``await task.enqueue(...)``. An
        ``async def`` task runs on the event loop awaiting ``run()``; a plain ``def`` one in
        the handler threads."""

        def register(function: Callable[P, R]) -> AsyncTask[P, R]:
            registers: _Registers = self  # type: ignore[assignment]
            task_name = name if name is not None else getattr(function, "__name__", "")
            signature = TaskSignature.of(task_name, function)
            registers.entrypoint(
                task_name,
                retry=retry,
                concurrency_limit=concurrency_limit,
                per_worker_limit=per_worker_limit,
                requests_per_second=requests_per_second,
                timeout=timeout,
                max_lost=max_lost,
            )(async_task_handler(signature, function))
            return AsyncTask(function, signature, lambda: registers.queries)

        return register if func is None else register(func)
