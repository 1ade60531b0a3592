"""Running one handler, and how an attempt's end becomes an Outcome: its result encoded
strictly, its exception failed, retried or cancelled by the entrypoint's policies."""

from __future__ import annotations

import json
import logging
import re
import traceback
from datetime import datetime

from pgqueue_sync.clock import Clock
from pgqueue_sync.context import CURRENT, Context, JobCancelled
from pgqueue_sync.errors import UnknownEntrypointError, UnstorableResultError
from pgqueue_sync.models import Job, JobStatus, Outcome
from pgqueue_sync.registry import Entrypoint
from pgqueue_sync.retry import RetryPolicy, RetryRequested

__all__ = ["encode_result", "execute", "failure"]

logger = logging.getLogger(__name__)


def _age(job: Job, now: datetime | None) -> float:
    reference = now if now is not None else datetime.now(job.created.tzinfo)
    return max(0.0, (reference - job.created).total_seconds())


_SUCCESSFUL = JobStatus.SUCCESSFUL

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
    if ctx._cancelled:  # is_cancelled, without the property's call (once per job)
        return _outcome(job, started, clock, JobStatus.CANCELED)
    try:
        if entry is None:
            raise UnknownEntrypointError(f"no handler for entrypoint {job.entrypoint!r}")
        # What `with running(ctx)` does, without a generator-based context manager per job.
        token = CURRENT.set(ctx)
        try:
            value = entry.func(job, ctx) if entry.takes_context else entry.func(job)
        finally:
            CURRENT.reset(token)
    except JobCancelled:
        return _outcome(job, started, clock, JobStatus.CANCELED, traceback.format_exc())
    except BaseException as exc:  # SystemExit and KeyboardInterrupt fail the job, not the worker
        duration = max(0.0, clock.monotonic() - started)
        return failure(entry, job, exc, traceback.format_exc(), duration, clock)
    if value is None:  # the usual end, written out here: one call fewer per job
        duration = clock.monotonic() - started
        return Outcome(job.id, job.attempts, _SUCCESSFUL, duration if duration > 0 else 0.0)
    try:
        result, value_json = encode_result(value, max_result_bytes)
    except UnstorableResultError as exc:
        logger.warning("job %d (%s): %s", job.id, job.entrypoint, exc)
        text = f"UnstorableResultError: job {job.id} finished but {exc}\n"
        return _outcome(job, started, clock, JobStatus.EXCEPTION, text)
    return _outcome(job, started, clock, JobStatus.SUCCESSFUL, None, result, value_json)


def _outcome(
    job: Job,
    started: float,
    clock: Clock,
    status: JobStatus,
    traceback: str | None = None,
    result: bytes | None = None,
    value_json: str | None = None,
) -> Outcome:
    duration = max(0.0, clock.monotonic() - started)
    return Outcome(job.id, job.attempts, status, duration, traceback, result, value_json)


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
