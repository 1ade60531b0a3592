"""How a worker stops: held jobs finish, what is left goes back to the queue, outcomes are
written, within the shutdown deadline.

:class:`Shutdown` is run once by the worker (:meth:`.worker.Worker.shutdown`) when its fetch
loop has ended; its collaborators are handed to it, it keeps no state of its own.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from pgqueue_sync.clock import Clock, Deadline
from pgqueue_sync.errors import PgQueueError
from pgqueue_sync.models import JobId
from pgqueue_sync.options import RunOptions

from .buffer import JobBuffer, Mailbox
from .hooks import HookList
from .ledger import Ledger

__all__ = ["FLUSH_GRACE", "Shutdown"]

logger = logging.getLogger(__name__)

# With no shutdown_timeout, how long the outcomes of finished jobs may take to be written
# once every handler has returned (a database that refuses them cannot hold run() forever).
FLUSH_GRACE = 10.0


class Shutdown:
    """One worker's stop (see the module docstring): ``run()`` returns by the deadline plus
    about a second, whatever the database and the handlers do; with no deadline, it waits
    for running handlers (not for those past their own timeout) and then gives the writes
    FLUSH_GRACE."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        buffer: JobBuffer,
        mailbox: Mailbox,
        options: RunOptions,
        clock: Clock,
        hooks: HookList,
        release: Callable[[set[JobId], set[JobId]], set[JobId]],
        join: Callable[[Deadline], None],
        finish: Callable[[float], None],
        fatal: Callable[[], PgQueueError | None],
    ) -> None:
        self._ledger = ledger
        self._buffer = buffer
        self._mailbox = mailbox
        self._options = options
        self._clock = clock
        self._hooks = hooks
        self._release = release
        self._join = join
        self._finish = finish
        self._fatal = fatal

    def run(self) -> None:
        self._hooks.shutting_down()
        timeout = self._options.shutdown_timeout
        deadline = None if timeout is None else self._clock.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else deadline - self._clock.monotonic()

        # Running and buffered jobs finish (the handler threads keep going, all awake) ...
        self._buffer.wake_all()
        while self._fatal() is None and self._ledger.held():
            left = remaining()
            if left is not None and left <= 0:
                break
            if left is None and not (self._ledger.unfinished() or self._buffer.qsize()):
                break  # only outcomes left to write: the flusher's grace below
            self._mailbox.wait(0.5 if left is None else min(0.5, left))
        # ... and past the deadline, what has not finished goes back to the queue at once.
        unstarted = {job.id for job in self._buffer.drain()}
        running = self._ledger.abandon_running()
        if (unstarted or running) and self._fatal() is None:
            try:
                self._release(unstarted | running, unstarted)
            except PgQueueError as exc:
                logger.error(
                    "could not release %d job(s) at shutdown (%s); they run again after "
                    "retry_timer (%s)",
                    len(unstarted | running),
                    exc,
                    self._options.retry_timer,
                )
            if running:
                logger.warning(
                    "shutdown deadline passed with %d handler(s) still running; their jobs "
                    "were released and their threads abandoned",
                    len(running),
                )
        self._buffer.close()
        if self._fatal() is None:
            left = remaining()
            self._join(Deadline(None if left is None else max(0.1, left)))
        if self._fatal() is not None:
            grace = 0.0
        elif deadline is None:
            grace = FLUSH_GRACE
        else:
            grace = max(0.3, remaining() or 0.0)
        self._finish(grace)
