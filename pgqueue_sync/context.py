"""What a running handler can know of its job: its Context, and ``current_context()``."""

from __future__ import annotations

import contextlib
import contextvars
import dataclasses
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from typing import ClassVar

from .errors import NoContextError, PgQueueError
from .models import Job

__all__ = ["Context", "JobCancelled", "current_context", "running"]

logger = logging.getLogger(__name__)

# The running handler's Context; the engine sets it around each handler (as `running` does).
CURRENT: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "pgqueue_sync_context", default=None
)
_current = CURRENT


def current_context() -> Context:
    """The Context of the job that the calling handler thread is running."""
    ctx = _current.get()
    if ctx is None:
        raise NoContextError("current_context() is only available inside a job handler")
    return ctx


@contextlib.contextmanager
def running(ctx: Context) -> Iterator[None]:
    """Make ``ctx`` what ``current_context`` returns in this thread, for the block."""
    token = _current.set(ctx)
    try:
        yield
    finally:
        _current.reset(token)


class JobCancelled(PgQueueError):
    """Raised by ``Context.check`` inside a handler whose job was cancelled."""


@dataclasses.dataclass
class Context:
    """What a running handler can know about its job beyond the Job itself.

    Threads cannot be killed: when the job is cancelled (or runs past its timeout) while it
    runs, ``cancelled`` is set and a long handler should look at it, or call ``check``,
    between steps. A handler gets its Context as a second parameter (``def handler(job,
    ctx)``) or from ``pgqueue_sync.current_context()``.

    Attributes:
        job: the job being run.
        worker_id: the worker running it.
    """

    job: Job
    worker_id: uuid.UUID
    # A worker makes one Context per claimed job: the Event is only made for a handler that
    # asks for it (a threading.Event costs more to create than the rest of the Context).
    _cancelled: bool = dataclasses.field(default=False, repr=False)
    _event: threading.Event | None = dataclasses.field(default=None, repr=False)
    _callbacks: list[Callable[[], object]] | None = dataclasses.field(default=None, repr=False)
    # One lock for every Context (cancellations are rare; a lock and a list per claimed job
    # doubled the cost of making one).
    _lock: ClassVar[threading.Lock] = threading.Lock()

    # Written by hand (dataclass keeps an __init__ the class defines): a worker makes one
    # Context per claimed job, and the generated one, assigning all five fields, cost twice
    # as much; the private ones keep their class defaults until a cancellation sets them.
    def __init__(self, job: Job, worker_id: uuid.UUID) -> None:
        self.job = job
        self.worker_id = worker_id

    @property
    def attempt(self) -> int:
        """1 for the first run of the job, 2 for its first retry, and so on."""
        return self.job.attempts

    @property
    def cancelled(self) -> threading.Event:
        """Set once the job is cancelled: ``ctx.cancelled.is_set()``, ``.wait(timeout)``."""
        with self._lock:
            if self._event is None:
                self._event = threading.Event()
                if self._cancelled:
                    self._event.set()
            return self._event

    @property
    def is_cancelled(self) -> bool:
        """Whether the job was cancelled (``cancelled.is_set()``, without making the Event)."""
        return self._cancelled

    def check(self) -> None:
        """Raise ``JobCancelled`` if the job was cancelled; the job ends ``canceled``."""
        if self._cancelled:
            raise JobCancelled(f"job {self.job.id} was cancelled")

    def cancel(self) -> None:
        """Mark the job cancelled and run the callbacks registered with ``on_cancel``."""
        with self._lock:
            if self._cancelled:
                return
            self._cancelled = True
            if self._event is not None:
                self._event.set()
            callbacks, self._callbacks = self._callbacks or [], None
        for callback in callbacks:
            try:
                callback()
            except Exception:
                logger.exception("cancel callback of job %d failed", self.job.id)

    def on_cancel(self, callback: Callable[[], object]) -> Callable[[], None]:
        """Call ``callback`` (from another thread) when the job is cancelled; at once if it
        already is. Returns a function that unregisters it."""
        with self._lock:
            if not self._cancelled:
                if self._callbacks is None:
                    self._callbacks = []
                self._callbacks.append(callback)

                def remove() -> None:
                    with self._lock, contextlib.suppress(ValueError):
                        if self._callbacks is not None:
                            self._callbacks.remove(callback)

                return remove
        callback()
        return lambda: None
