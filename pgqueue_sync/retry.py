"""Reconnect policies (tenacity): bounded, jittered exponential backoff, logged."""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import tenacity

from .errors import ConnectError, ConnectionLostError, PgQueueError
from .options import duration

__all__ = ["CONNECTION_ERRORS", "RetryPolicy", "RetryRequested", "reconnecting"]

logger = logging.getLogger(__name__)

CONNECTION_ERRORS = (ConnectionLostError, ConnectError)


def _log_retry(what: str) -> Callable[[tenacity.RetryCallState], None]:
    def log(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome is not None else None
        delay = state.next_action.sleep if state.next_action is not None else 0.0
        logger.warning(
            "%s: %s; retrying in %.2f s (attempt %d)", what, exc, delay, state.attempt_number
        )

    return log


def reconnecting(
    what: str,
    *,
    sleep: Callable[[float], object],
    should_stop: Callable[[], bool],
    initial: float = 0.05,
    max_delay: float = 2.0,
) -> tenacity.Retrying:
    """Retry a block while it fails with a connection error, until ``should_stop()``.

    ``sleep`` is how to wait between attempts (an Event's ``wait``, so that a shutdown
    interrupts the backoff). Once ``should_stop()`` is true the last error is re-raised.
    """

    def stop(state: tenacity.RetryCallState) -> bool:
        return should_stop()

    def do_sleep(seconds: float) -> None:
        sleep(seconds)

    return tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(CONNECTION_ERRORS),
        wait=tenacity.wait_exponential(multiplier=initial, max=max_delay)
        + tenacity.wait_random(0, initial),
        stop=stop,
        sleep=do_sleep,
        before_sleep=_log_retry(what),
        reraise=True,
    )


class RetryRequested(PgQueueError):
    """Raise it in a handler to run the job again after ``delay`` (an attempt is used)."""

    def __init__(self, delay: timedelta | float = 0.0, reason: str = "") -> None:
        seconds = duration(delay, "the retry delay", zero=True)
        super().__init__(reason or f"retry requested in {seconds:g} s")
        self.delay = seconds


@dataclasses.dataclass(frozen=True)
class RetryPolicy:
    """When and how soon a failed job runs again, in tenacity's vocabulary.

    ```python
    RetryPolicy(
        stop=tenacity.stop_after_attempt(5),
        wait=tenacity.wait_exponential(multiplier=2, max=300) + tenacity.wait_random(0, 1),
        retry=tenacity.retry_if_exception_type(ConnectionError),
    )
    ```

    The wait is not slept in a worker thread: the job goes back to the queue with
    ``execute_after`` set that far ahead. When ``retry`` declines the exception or ``stop``
    says so, the job ends ``failed`` and stays in the queue table (see ``requeue``).
    ``stop_after_delay`` counts from the job's creation.

    Attributes:
        stop: a tenacity stop condition: when to give up. Default
            ``stop_after_attempt(3)``.
        wait: a tenacity wait: how long before the next attempt. Default
            ``wait_exponential(multiplier=1, min=1, max=300)``.
        retry: a tenacity retry condition: which exceptions are retried. Default
            ``retry_if_exception_type(Exception)``.
    """

    stop: Any = dataclasses.field(default_factory=lambda: tenacity.stop_after_attempt(3))
    wait: Any = dataclasses.field(
        default_factory=lambda: tenacity.wait_exponential(multiplier=1, min=1, max=300)
    )
    retry: Any = dataclasses.field(
        default_factory=lambda: tenacity.retry_if_exception_type(Exception)
    )

    def next_delay(self, attempt: int, error: BaseException, age: float) -> float | None:
        """Seconds until the next attempt, or None if the job should fail now.

        Args:
            attempt: the attempt that just failed (1 for the first run).
            error: what the handler raised.
            age: seconds since the job was created.
        """
        state = tenacity.RetryCallState(retry_object=_RETRYING, fn=None, args=(), kwargs={})
        state.attempt_number = max(1, attempt)
        state.outcome = tenacity.Future.construct(state.attempt_number, error, True)
        state.outcome_timestamp = state.start_time + max(0.0, age)
        if isinstance(error, RetryRequested):
            return None if self.stop(state) else error.delay
        if not self.retry(state) or self.stop(state):
            return None
        return max(0.0, float(self.wait(state)))


_RETRYING = tenacity.Retrying()
