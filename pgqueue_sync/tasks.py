"""Tasks: functions whose calls are jobs, with JSON arguments (``@qm.task``).

```python
@qm.task(name="send_email", retry=RetryPolicy(stop=stop_after_attempt(5)), timeout=30)
def send_email(to: str, subject: str, *, urgent: bool = False) -> str: ...

job_id = send_email.enqueue("a@b.c", "hi", urgent=True)   # a job; its arguments as JSON
send_email.enqueue("a@b.c", "hi", priority=5, connection=conn)   # enqueue options
send_email("a@b.c", "hi")                                 # a plain call: runs it here
```

A task is a registered entrypoint named ``name``: retries, limits, timeouts, cancellation,
results, history, pause and the CLI apply to it as to any other. Its arguments are checked
against the function's signature and JSON-encoded when the job is enqueued
(``pgqueue_sync.task_arguments``); the worker decodes them and calls the function with
them; what it returns is the job's result (``wait_for`` gives it in ``.value``, or in
``.result`` for bytes).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, TypeVar

import psycopg

from .context import Context
from .db import Connection
from .enqueue import OnConflict, When
from .errors import InvalidTaskArgumentsError
from .models import Job, JobId
from .queries import Queries
from .task_arguments import TaskSignature, decode_arguments, describe

__all__ = ["Task", "TaskBase", "task_handler"]

P = ParamSpec("P")
R = TypeVar("R")


def task_handler(
    signature: TaskSignature, func: Callable[..., Any]
) -> Callable[[Job, Context], Any]:
    """The entrypoint handler of a task: decodes the job's arguments and calls ``func`` with
    them (and the job's Context, if ``func`` takes one); returns what ``func`` returns (for
    an ``async def`` function, the coroutine: the async manager awaits it)."""

    def run_task(job: Job, ctx: Context) -> Any:
        args, kwargs = decode_arguments(signature.name, job.payload)
        call_args, call_kwargs = signature.call_arguments(args, kwargs, ctx)
        return func(*call_args, **call_kwargs)

    run_task.__name__ = getattr(func, "__name__", run_task.__name__)
    run_task.__qualname__ = getattr(func, "__qualname__", run_task.__qualname__)
    return run_task


class TaskBase(Generic[P, R]):
    """What every task is, whichever manager runs it.

    - ``name``: its entrypoint's name.
    - ``func``: the function (calling the task calls it inline, here and now).
    - ``signature``: a ``TaskSignature``, what the
      arguments are checked against, and the parameter that receives the Context, if any.
    """

    def __init__(self, func: Callable[P, R], signature: TaskSignature) -> None:
        self.func = func
        self.name = signature.name
        self.signature = signature
        functools.update_wrapper(self, func)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        """Run the function inline, as a plain call (no job, no queue)."""
        return self.func(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} {describe(self.signature.full)}>"

    def payload(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], max_payload_bytes: int
    ) -> bytes:
        """The job payload that calls the task with ``args`` and ``kwargs``: checked against
        the signature and JSON-encoded (InvalidTaskArgumentsError, PayloadTooLargeError)."""
        return self.signature.encode(args, kwargs, max_payload_bytes)

    def _refuse_collisions(self) -> None:
        """``enqueue`` takes the enqueue options by keyword: a task that also has a parameter
        of one of those names could not tell them apart, so it is enqueued with
        ``enqueue_with`` instead."""
        if self.signature.collisions:
            names = ", ".join(sorted(self.signature.collisions))
            raise InvalidTaskArgumentsError(
                f"task {self.name!r} has a parameter named like an enqueue option ({names}): "
                "enqueue it with .enqueue_with(args, kwargs, priority=...), which takes its "
                "arguments as a sequence and a mapping"
            )


class Task(TaskBase[P, R]):
    """A task of a ``QueueManager`` (made by ``@qm.task``).

    ``task(...)`` runs the function inline; ``task.enqueue(...)`` makes it a job.
    """

    def __init__(
        self,
        func: Callable[P, R],
        signature: TaskSignature,
        queries: Callable[[], Queries],
    ) -> None:
        super().__init__(func, signature)
        self._queries = queries

    def enqueue(
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
        """Enqueue a job that calls the task with ``*args`` and ``**kwargs``.

        The arguments are checked against the function's signature and must be JSON,
        before anything is written. The keyword-only options are those of
        [`Queries.enqueue`][pgqueue_sync.Queries.enqueue]. A task with a parameter named
        like one of them is enqueued with ``enqueue_with``.

        Args:
            *args: the task's positional arguments.
            priority: higher runs first. Default 0.
            execute_after: a delay (``timedelta``) or a time (aware ``datetime``) before
                which the job does not run; None: due now.
            dedupe_key: at most one queued-or-running job per key.
            on_conflict: ``"raise"`` (``DuplicateJobError``) or ``"skip"`` (the id of the
                job holding the key is returned).
            headers: a small JSON object kept with the job and in the log.
            connection: a connection (or cursor) whose open transaction the job joins: it
                exists only if the transaction commits.
            **kwargs: the task's keyword arguments.

        Returns:
            The job's id.

        Raises:
            InvalidTaskArgumentsError: the arguments do not match the signature, JSON
                cannot carry one of them, or a keyword names an enqueue option the task
                also takes as a parameter.
        """
        self._refuse_collisions()
        return self.enqueue_with(
            args,
            kwargs,
            priority=priority,
            execute_after=execute_after,
            dedupe_key=dedupe_key,
            on_conflict=on_conflict,
            headers=headers,
            connection=connection,
        )

    def enqueue_with(
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
        """``enqueue``, with the task's arguments as a sequence and a mapping: whatever
        their names, they never mix with the options."""
        queries = self._queries()
        payload = self.payload(args, kwargs or {}, queries.settings.max_payload_bytes)
        if connection is None and not getattr(queries, "eager", False):
            connection = self._connection()
        [job_id] = queries.enqueue(
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

    def _connection(self) -> Connection | None:
        """The connection a job is enqueued on when the caller gives none (None: the
        driver's); a hook for integrations that join a transaction of their own
        (Flask-SQLAlchemy's session). Not asked in eager mode, which has no database."""
        return None
