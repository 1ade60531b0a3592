"""Reconnect policies (tenacity): bounded, jittered exponential backoff, logged."""

from __future__ import annotations

import logging
from collections.abc import Callable

import tenacity

from .errors import ConnectError, ConnectionLostError

__all__ = ["CONNECTION_ERRORS", "reconnecting"]

logger = logging.getLogger("pgqueue_sync")

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
    max_delay: float = 5.0,
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
