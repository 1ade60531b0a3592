"""Running one handler: the registry entry, and how an attempt's end becomes an Outcome."""

from __future__ import annotations

import contextvars
import dataclasses
import inspect
import json
import logging
import re
import traceback
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from .clock import Clock
from .errors import NoContextError, UnknownEntrypointError, UnstorableResultError
from .models import Context, Job, JobCancelled, JobStatus
from .retry import RetryPolicy, RetryRequested
from .worker_queries import Outcome

if TYPE_CHECKING:
    from .cron import Schedule

__all__ = [
    "DEFAULT_MAX_LOST",
    "Entrypoint",
    "current_context",
    "encode_result",
    "execute",
    "failure",
    "is_async_callable",
]

logger = logging.getLogger("pgqueue_sync")

_current_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "pgqueue_sync_context", default=None
)


def is_async_callable(func: object) -> bool:
    """True for an ``async def`` function, or an object whose ``__call__`` is one."""
    call = getattr(func, "__call__", None)  # noqa: B004 - async __call__ on instances
    return inspect.iscoroutinefunction(func) or (
        not inspect.isfunction(func) and call is not None and inspect.iscoroutinefunction(call)
    )


def current_context() -> Context:
    """The Context of the job that the calling handler thread is running."""
    ctx = _current_context.get()
    if ctx is None:
        raise NoContextError("current_context() is only available inside a job handler")
    return ctx


# How many times a job's worker may be lost while running it before the job is failed.
DEFAULT_MAX_LOST = 3


@dataclasses.dataclass(frozen=True)
class Entrypoint:
    """A registered handler and its policies."""

    name: str
    func: Callable[..., object]
    takes_context: bool = False
    retry: RetryPolicy | None = None
    concurrency_limit: int | None = None
    per_worker_limit: int | None = None
    requests_per_second: float | None = None
    timeout: float | None = None
    max_lost: int | None = DEFAULT_MAX_LOST
    # Set by ``qm.periodic``: the schedule whose ticks enqueue this entrypoint's jobs.
    schedule: Schedule | None = None

    @property
    def globally_limited(self) -> bool:
        return self.concurrency_limit is not None or self.requests_per_second is not None

    @property
    def limited(self) -> bool:
        return self.globally_limited or self.per_worker_limit is not None


def _age(job: Job, now: datetime | None) -> float:
    reference = now if now is not None else datetime.now(job.created.tzinfo)
    return max(0.0, (reference - job.created).total_seconds())


# A NUL character as JSON writes it: \u0000 after an even number of backslashes.
_JSON_NUL = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def encode_result(value: object, limit: int) -> tuple[bytes | None, str | None]:
    """A handler's return value as the log stores it: ``(bytes, None)``, ``(None, JSON
    text)``, or ``(None, None)`` for None. Raises UnstorableResultError naming the problem."""
    if value is None:
        return None, None
    if isinstance(value, (bytes, bytearray, memoryview)):
        blob = bytes(value)
        if len(blob) > limit:
            raise UnstorableResultError(
                f"the result is {len(blob)} bytes, over the limit of {limit} bytes "
                "(max_payload_bytes); store large data elsewhere and return a reference"
            )
        return blob, None
    try:
        text = json.dumps(value, allow_nan=False, ensure_ascii=False)
    except ValueError as exc:
        # NaN and Infinity: json's own message says "Out of range float values ...".
        raise UnstorableResultError(
            f"the result is not strict JSON: {exc} (NaN and Infinity have no JSON form; "
            "return None or a string for them)"
        ) from None
    except (TypeError, RecursionError) as exc:
        raise UnstorableResultError(
            f"the result of type {type(value).__name__} is neither bytes nor JSON: {exc}"
        ) from None
    if _JSON_NUL.search(text):
        raise UnstorableResultError(
            "the result holds a NUL character (\\x00), which PostgreSQL cannot store in "
            "JSON: return bytes for binary data"
        )
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError as exc:
        raise UnstorableResultError(
            f"the result holds a lone surrogate ({exc.object[exc.start : exc.end]!a}), which "
            "is not valid Unicode text: decode bytes with errors='replace' or return bytes"
        ) from None
    if size > limit:
        raise UnstorableResultError(
            f"the result is {size} bytes of JSON, over the limit of {limit} bytes "
            "(max_payload_bytes); store large data elsewhere and return a reference"
        )
    return None, text


def execute(
    entry: Entrypoint | None,
    job: Job,
    ctx: Context,
    clock: Clock,
    *,
    max_result_bytes: int,
) -> Outcome:
    """Run the handler of ``job`` and describe how the attempt ended.

    Never raises: an exception (SystemExit and KeyboardInterrupt included) fails the
    attempt; with a retry policy the job is retried after its backoff, or ends ``failed``.
    """
    started = clock.monotonic()

    def outcome(status: JobStatus, **extra: Any) -> Outcome:
        duration = max(0.0, clock.monotonic() - started)
        return Outcome(job.id, job.attempts, status, duration, **extra)

    if ctx.is_cancelled:
        return outcome(JobStatus.CANCELED)
    token = _current_context.set(ctx)
    try:
        if entry is None:
            raise UnknownEntrypointError(f"no handler for entrypoint {job.entrypoint!r}")
        value = entry.func(job, ctx) if entry.takes_context else entry.func(job)
    except JobCancelled:
        return outcome(JobStatus.CANCELED, traceback=traceback.format_exc())
    except BaseException as exc:  # SystemExit and KeyboardInterrupt fail the job, not the worker
        duration = max(0.0, clock.monotonic() - started)
        return failure(entry, job, exc, traceback.format_exc(), duration, clock)
    finally:
        _current_context.reset(token)
    try:
        result, value_json = encode_result(value, max_result_bytes)
    except UnstorableResultError as exc:
        logger.warning("job %d (%s): %s", job.id, job.entrypoint, exc)
        text = f"UnstorableResultError: job {job.id} finished but {exc}\n"
        return outcome(JobStatus.EXCEPTION, traceback=text)
    return outcome(JobStatus.SUCCESSFUL, result=result, value_json=value_json)


def failure(
    entry: Entrypoint | None,
    job: Job,
    exc: BaseException,
    text: str,
    duration: float,
    clock: Clock,
) -> Outcome:
    """The outcome of an attempt that raised ``exc``: retried after the backoff of the
    entrypoint's policy, ``failed`` once the policy gives up, or ``exception`` without one."""
    policy = entry.retry if entry is not None else None
    if policy is None and isinstance(exc, RetryRequested):
        policy = _ALWAYS
    name = type(exc).__name__
    if policy is None:
        logger.warning("job %d (%s) raised %s: %s", job.id, job.entrypoint, name, exc)
        return Outcome(job.id, job.attempts, JobStatus.EXCEPTION, duration, traceback=text)
    delay = policy.next_delay(job.attempts, exc, _age(job, clock.now()))
    if delay is None:
        logger.warning(
            "job %d (%s) failed after %d attempt(s): %s: %s",
            job.id,
            job.entrypoint,
            job.attempts,
            name,
            exc,
        )
        return Outcome(job.id, job.attempts, JobStatus.FAILED, duration, traceback=text)
    logger.info(
        "job %d (%s) attempt %d raised %s; retrying in %.3g s",
        job.id,
        job.entrypoint,
        job.attempts,
        name,
        delay,
    )
    return Outcome(job.id, job.attempts, JobStatus.QUEUED, duration, traceback=text, delay=delay)


class _NeverStop:
    def __call__(self, state: object) -> bool:
        return False


# RetryRequested without a policy: always honoured.
_ALWAYS = RetryPolicy(stop=_NeverStop())
