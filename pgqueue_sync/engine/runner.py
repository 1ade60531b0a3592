"""The runner: handler threads take jobs from the buffer and run their handlers.

A job of a paused entrypoint is given back to the queue instead (:mod:`.presence`). A
handler past its entrypoint's ``timeout`` fails its job with a JobTimeoutError (its
stack at that moment in the traceback). Its thread cannot be killed: it is retired (it ends
if the handler ever returns, and what it returns is dropped) and replaced while at most
``workers`` threads are stuck. A worker with no thread left can start nothing: it gives
its buffered jobs back to the queue at once and claims nothing until a handler returns.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import traceback
from collections.abc import Callable, Mapping

from pgqueue_sync.clock import Clock, Deadline
from pgqueue_sync.context import Context
from pgqueue_sync.errors import JobTimeoutError
from pgqueue_sync.models import Job, JobId, JobStatus, Outcome
from pgqueue_sync.options import RunOptions
from pgqueue_sync.registry import Entrypoint

from .buffer import BufferClosed, CompletionBuffer, JobBuffer, Mailbox
from .execution import execute, failure
from .hooks import HookList
from .ledger import Ledger
from .presence import Presence
from .rescue import Rescue

__all__ = ["Runner"]

logger = logging.getLogger(__name__)

_SUCCESSFUL = JobStatus.SUCCESSFUL

# How long an idle handler thread waits for a job before it looks again.
TAKE_TIMEOUT = 5.0


class Runner:
    """The handler threads, and the steps they take (see the module docstring)."""

    def __init__(
        self,
        *,
        registry: Mapping[str, Entrypoint],
        ledger: Ledger,
        buffer: JobBuffer,
        completions: CompletionBuffer,
        mailbox: Mailbox,
        rescue: Rescue,
        presence: Presence,
        options: RunOptions,
        clock: Clock,
        max_result_bytes: int,
        on_done: Callable[[Job], None] | None,
        release: Callable[[set[JobId], set[JobId]], set[JobId]],
        hooks: HookList,
    ) -> None:
        # None without hooks: a falsy check per job without HookList.__bool__'s call.
        self._hooks = hooks if hooks else None
        self._registry = dict(registry)
        self._ledger = ledger
        self._buffer = buffer
        self._completions = completions
        self._mailbox = mailbox
        self._rescue = rescue
        self._presence = presence
        self._options = options
        self._clock = clock
        self._max_result_bytes = max_result_bytes
        self._on_done = on_done
        self._release = release
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        # Handler threads that can take a job (started, not retired).
        self._live = 0
        # Idents of threads whose handler ran past its timeout: if it ever returns, the
        # thread ends instead of taking another job.
        self._retired: set[int] = set()
        self._names = itertools.count()

    # -- observation ---------------------------------------------------------------------

    @property
    def live_threads(self) -> int:
        """Handler threads that can take a job."""
        return self._live

    def can_start(self) -> bool:
        """Whether a handler thread is free to take jobs (always, before threads exist)."""
        return self._live > 0 or not self._threads

    # -- steps ---------------------------------------------------------------------------

    def run_job(self, job: Job) -> Outcome:
        """Run the handler of one job and queue its outcome for writing."""
        if job.entrypoint in self._presence.paused and (
            (back := self._presence.hold_back(job)) is not None
        ):
            return back  # paused: given back to the queue, unstarted
        entry = self._registry.get(job.entrypoint)
        if job.rescued and (instead := self._rescue.before(job, entry)) is not None:
            return instead
        ctx = self._ledger.start(job, self._clock.monotonic(), threading.get_ident())
        if ctx is None:
            # Superseded by a newer attempt of the same job while it waited in the buffer.
            return Outcome(job.id, job.attempts, JobStatus.CANCELED, 0.0)
        if entry is not None and entry.timeout is not None:
            self._completions.poke()  # the flusher watches timeouts: a new one starts now
        if self._hooks:
            scope = self._hooks.job_scope(job)
            if scope is not None:
                with scope:
                    return self._run(job, entry, ctx)
        return self._run(job, entry, ctx)

    def _run(self, job: Job, entry: Entrypoint | None, ctx: Context) -> Outcome:
        if self._hooks:
            self._hooks.job_started(job)
        try:
            result = execute(entry, job, ctx, self._clock, max_result_bytes=self._max_result_bytes)
        except BaseException:
            self._ledger.finish(job, succeeded=False)
            raise
        if not self._ledger.finish(job, result.status is _SUCCESSFUL):
            logger.warning(
                "job %d: its handler returned %.1f s after its timeout; the outcome it "
                "reports (%s) is dropped",
                job.id,
                result.duration,
                result.status,
            )
            return result
        self._completions.add(result)
        if self._hooks:
            self._hooks.job_finished(job, result)
        if self._on_done is not None:
            self._on_done(job)
        return result

    def check_timeouts(self) -> float | None:
        """Fail the jobs whose handler has run past its entrypoint's ``timeout``; the
        seconds until the next running job's timeout, if any.

        Their threads are retired (see the module docstring), their context is cancelled,
        and the job is failed (or retried) with a JobTimeoutError.
        """
        now = self._clock.monotonic()
        expired, next_in = self._ledger.expire(now, self._timeout_of)
        if not expired:
            return next_in
        replace = 0
        with self._lock:
            for _, run, _ in expired:
                if self._threads and run.thread not in self._retired:
                    self._retired.add(run.thread)
                    self._live -= 1
                    # A handler that always hangs must not make the worker start threads
                    # without end: at most `workers` stuck threads are replaced.
                    if len(self._retired) <= self._options.workers:
                        replace += 1
        frames = sys._current_frames()  # where each stuck handler is now
        self.start(replace)
        if self._threads and replace < len(expired):
            logger.error(
                "%d handler thread(s) stuck past their timeout and not replaced (at most %d "
                "are): this worker now runs with %d thread(s)",
                len(expired) - replace,
                self._options.workers,
                self._live,
            )
        if not self.can_start():
            self._release_unstartable()
        for job, run, ctx in expired:
            if ctx is not None:
                ctx.cancel()
            entry = self._registry.get(job.entrypoint)
            timeout = self._timeout_of(job) or 0.0
            error = JobTimeoutError(
                f"job {job.id} ran longer than its timeout of {timeout:g} s; its handler "
                "thread was abandoned (threads cannot be killed)"
            )
            frame = frames.get(run.thread)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            text = f"Handler stack at the timeout:\n{stack}JobTimeoutError: {error}\n"
            outcome = failure(entry, job, error, text, now - run.started, self._clock)
            self._completions.add(outcome)
            if self._hooks:
                self._hooks.job_timed_out(job, outcome)
        return next_in

    def _timeout_of(self, job: Job) -> float | None:
        entry = self._registry.get(job.entrypoint)
        return None if entry is None else entry.timeout

    def _release_unstartable(self) -> None:
        """No thread can start a job: buffered jobs go back to the queue at once, for other
        workers (no attempt used)."""
        unstarted = {job.id for job in self._buffer.drain()}
        if unstarted:
            logger.error(
                "every handler thread is stuck past its timeout: %d buffered job(s) go back "
                "to the queue; nothing is claimed until a handler returns",
                len(unstarted),
            )
            self._release(unstarted, unstarted)

    # -- threads -------------------------------------------------------------------------

    def start(self, count: int) -> None:
        """Start ``count`` handler threads (at the start, and to replace stuck ones)."""
        for _ in range(count):
            if self._buffer.closed:
                return
            thread = threading.Thread(
                target=self._serve,
                name=f"pgqueue-sync-worker-{next(self._names)}",
                daemon=True,
            )
            with self._lock:
                self._threads.append(thread)
                self._live += 1
            thread.start()
        if count:
            self._mailbox.post(Mailbox.ROOM)

    def join(self, deadline: Deadline) -> None:
        """Wait for the threads that are not stuck to end (the buffer is closed), at most
        until ``deadline``."""
        with self._lock:
            threads = [t for t in self._threads if t.ident not in self._retired]
        for thread in threads:
            thread.join(deadline.remaining())

    def _serve(self) -> None:
        me = threading.get_ident()
        try:
            while True:
                try:
                    job = self._buffer.take(timeout=TAKE_TIMEOUT)
                except BufferClosed:
                    return
                if job is not None:
                    self._buffer.ran(self.run_job(job).duration)
                    if self._retired and self._is_retired(me):
                        return
        finally:
            self._ended(me)

    def _is_retired(self, ident: int) -> bool:
        with self._lock:
            return ident in self._retired

    def _ended(self, ident: int) -> None:
        with self._lock:
            if ident in self._retired:
                self._retired.discard(ident)
            else:
                self._live -= 1
            self._threads = [t for t in self._threads if t.ident != ident]
            missing = self._options.workers - self._live
        # A stuck handler returned at last: its thread ends, and one takes its place if
        # the worker is short of threads.
        if missing > 0 and not self._buffer.closed:
            self.start(1)
