"""What the testing helpers report of a job they ran (``JobOutcome``), and how they
run handlers: in the calling thread, their exceptions kept to be re-raised on request."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Mapping
from functools import partial
from typing import Any

from pgqueue_sync.context import Context
from pgqueue_sync.models import Job, JobId, JobStatus, Outcome
from pgqueue_sync.registry import Entrypoint, is_async_callable

__all__ = ["Capture", "JobOutcome"]


@dataclasses.dataclass(frozen=True)
class JobOutcome:
    """How one run of a job ended, as ``drain`` and ``eager`` report it.

    Attributes:
        job: the job as it was claimed (``job.payload``, ``job.attempts``, ...).
        status: ``successful``, ``exception``, ``failed`` (its retry policy gave up),
            ``canceled``; or ``queued``: the attempt failed and the job is retried after
            ``retry_in`` seconds.
        value: what the handler returned, if JSON (a task's return value).
        result: what the handler returned, if bytes.
        error: the exception the handler raised (None if it returned).
        traceback: the text the log keeps of that exception.
        retry_in: with ``status`` ``queued``, the seconds until the retry.
    """

    job: Job
    status: JobStatus
    value: Any = None
    result: bytes | None = None
    error: BaseException | None = None
    traceback: str | None = None
    retry_in: float | None = None

    @property
    def ok(self) -> bool:
        """Whether the handler returned (the job is ``successful``)."""
        return self.status is JobStatus.SUCCESSFUL

    @classmethod
    def of(cls, job: Job, outcome: Outcome, error: BaseException | None) -> JobOutcome:
        """The report of ``job``'s attempt that the engine ended with ``outcome``, having
        caught ``error`` from its handler (None if it returned)."""
        return cls(
            job=job,
            status=outcome.status,
            value=None if outcome.value_json is None else json.loads(outcome.value_json),
            result=outcome.result,
            error=error,
            traceback=outcome.traceback,
            retry_in=outcome.delay if outcome.status is JobStatus.QUEUED else None,
        )


def call_here(func: Callable[..., Any], *args: Any) -> Any:
    """Call a handler in this thread; an ``async def`` one on the event loop of the anyio
    worker thread this is (``await anyio.to_thread.run_sync(...)`` from an async test), else
    on a new event loop of its own."""
    if not is_async_callable(func):
        return func(*args)
    import anyio  # noqa: PLC0415 - only async handlers need it
    import anyio.from_thread  # noqa: PLC0415

    try:
        anyio.from_thread.run_sync(lambda: None)
    except RuntimeError:  # not an anyio worker thread: no event loop to run it on
        return anyio.run(partial(func, *args))
    return anyio.from_thread.run(partial(func, *args))


class Capture:
    """Handlers wrapped to run in the calling thread and keep the exception each attempt
    raised (the engine turns it into the job's outcome; a test may want it raised)."""

    def __init__(self, entrypoints: Mapping[str, Entrypoint]) -> None:
        self.errors: dict[tuple[JobId, int], BaseException] = {}
        self.registry = {name: self.wrap(entry) for name, entry in entrypoints.items()}

    def wrap(self, entry: Entrypoint) -> Entrypoint:
        """``entry`` with its handler run here and its exceptions kept."""
        func = entry.func
        takes_context = entry.takes_context

        def handler(job: Job, ctx: Context) -> Any:
            try:
                return call_here(func, job, ctx) if takes_context else call_here(func, job)
            except BaseException as exc:
                self.errors[(job.id, job.attempts)] = exc
                raise

        return dataclasses.replace(entry, func=handler, takes_context=True)

    def outcome(self, job: Job, outcome: Outcome) -> JobOutcome:
        """The report of ``job``'s attempt that ended with ``outcome``."""
        return JobOutcome.of(job, outcome, self.errors.pop((job.id, job.attempts), None))
