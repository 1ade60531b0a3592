"""The engine of one ``QueueManager.run()``: fetcher, worker threads, flusher, listener.

Data flow: the fetcher (the thread that called ``run()``) claims jobs into the bounded
:class:`JobBuffer`; worker threads take them and call the handlers; outcomes go to the
:class:`CompletionBuffer`, which the flusher thread writes in batches, fenced by worker id
and attempt. The flusher also refreshes the heartbeat of every held job (buffered, running
or finished-but-unwritten), so ``retry_timer`` only ever re-picks jobs of dead workers.

Each step is a method (``fetch_once``, ``run_job``, ``flush``, ``beat``, ``release``) so a
test can drive a worker one step at a time without threads.
"""

from __future__ import annotations

import contextvars
import dataclasses
import logging
import threading
import traceback
import uuid
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any, Literal

from .buffer import BufferClosed, CompletionBuffer, JobBuffer, Mailbox
from .clock import Clock
from .db import Driver, ManagedConnection
from .errors import ConfigurationError, PgQueueError
from .listener import Listener
from .models import Context, Job, JobId, JobStatus
from .queries import Outcome, Queries
from .retry import CONNECTION_ERRORS, reconnecting
from .settings import Settings
from .sql import statements

__all__ = ["Entrypoint", "RunOptions", "Worker", "current_context"]

logger = logging.getLogger("pgqueue_sync")

_current_context: contextvars.ContextVar[Context | None] = contextvars.ContextVar(
    "pgqueue_sync_context", default=None
)


def current_context() -> Context:
    """The Context of the job the calling handler thread is running."""
    ctx = _current_context.get()
    if ctx is None:
        raise LookupError("current_context() is only available inside a job handler")
    return ctx


Mode = Literal["continuous", "drain"]


@dataclasses.dataclass(frozen=True)
class Entrypoint:
    """A registered handler."""

    name: str
    func: Callable[..., object]
    takes_context: bool = False


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The knobs of one ``run()``, validated."""

    dequeue_timeout: float = 30.0
    batch_size: int = 10
    retry_timer: timedelta | None = timedelta(minutes=1)
    workers: int = 4
    buffer_size: int = 20
    shutdown_timeout: float | None = None
    mode: Mode = "continuous"
    heartbeat_interval: float = 10.0

    @classmethod
    def build(
        cls,
        *,
        dequeue_timeout: timedelta | float,
        batch_size: int,
        retry_timer: timedelta | float | None,
        workers: int,
        buffer_size: int | None,
        shutdown_timeout: timedelta | float | None,
        mode: str,
        heartbeat_interval: timedelta | float | None,
    ) -> RunOptions:
        def seconds(value: timedelta | float, name: str) -> float:
            secs = value.total_seconds() if isinstance(value, timedelta) else float(value)
            if secs < 0:
                raise ConfigurationError(f"{name} must not be negative")
            return secs

        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ConfigurationError("batch_size must be a positive int")
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ConfigurationError("workers must be a positive int")
        if buffer_size is None:
            buffer_size = 2 * max(batch_size, workers)
        elif isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
            raise ConfigurationError("buffer_size must be a positive int")
        if mode not in ("continuous", "drain"):
            raise ConfigurationError(f"mode must be 'continuous' or 'drain', not {mode!r}")
        retry: timedelta | None = None
        if retry_timer is not None:
            retry_secs = seconds(retry_timer, "retry_timer")
            retry = timedelta(seconds=retry_secs) if retry_secs > 0 else None
        if heartbeat_interval is None:
            # Several beats fit in retry_timer, so a live worker is never presumed dead.
            beat = 10.0 if retry is None else min(10.0, retry.total_seconds() / 5)
        else:
            beat = seconds(heartbeat_interval, "heartbeat_interval")
        if retry is not None and beat * 2 > retry.total_seconds():
            raise ConfigurationError(
                "heartbeat_interval must be well inside retry_timer (at most half of it), or "
                "live workers would have their jobs re-picked"
            )
        return cls(
            dequeue_timeout=max(0.01, seconds(dequeue_timeout, "dequeue_timeout")),
            batch_size=batch_size,
            retry_timer=retry,
            workers=workers,
            buffer_size=buffer_size,
            shutdown_timeout=None
            if shutdown_timeout is None
            else seconds(shutdown_timeout, "shutdown_timeout"),
            mode=mode,  # type: ignore[arg-type]
            heartbeat_interval=max(0.01, beat),
        )

    @property
    def claim_size(self) -> int:
        """How many jobs one claim asks for (never more than the buffer holds)."""
        return min(self.batch_size, self.buffer_size)


@dataclasses.dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    recorded: int = 0
    fenced: int = 0
    released: int = 0


@dataclasses.dataclass
class _Running:
    job: Job
    started: float
    context: Context


class Worker:
    """One run of a QueueManager (see the module docstring)."""

    def __init__(
        self,
        *,
        driver: Driver,
        settings: Settings,
        clock: Clock,
        registry: Mapping[str, Entrypoint],
        options: RunOptions,
        shutdown: threading.Event,
        mailbox: Mailbox,
    ) -> None:
        if not registry:
            raise ConfigurationError(
                "no entrypoint is registered: decorate a handler with @qm.entrypoint(name)"
            )
        self.id = uuid.uuid4()
        self.options = options
        self.clock = clock
        self.registry = dict(registry)
        self.entrypoints = sorted(registry)
        self.shutdown_event = shutdown
        self.mailbox = mailbox
        self.settings = settings
        self._fetch_conn = ManagedConnection(driver, "fetch")
        self._complete_conn = ManagedConnection(driver, "complete")
        self._listen_conn = ManagedConnection(driver, "listen")
        self.fetch_queries = Queries(self._fetch_conn, settings, clock=clock)
        self.complete_queries = Queries(self._complete_conn, settings, clock=clock)
        self.buffer = JobBuffer(
            options.buffer_size,
            watermark=options.claim_size,
            on_room=lambda: mailbox.post(Mailbox.ROOM),
        )
        self.completions = CompletionBuffer()
        self.stats = WorkerStats()
        self._lock = threading.Lock()
        self._held: dict[JobId, Job] = {}
        self._running: dict[JobId, _Running] = {}
        self._threads: list[threading.Thread] = []
        self._flusher: threading.Thread | None = None
        self._hard_stop = threading.Event()
        self._next_beat = clock.monotonic() + options.heartbeat_interval

    # -- observation ---------------------------------------------------------------------

    def held(self) -> dict[JobId, Job]:
        """Jobs this worker holds: buffered, running, or finished but not yet written."""
        with self._lock:
            return dict(self._held)

    def running(self) -> list[Job]:
        with self._lock:
            return [r.job for r in self._running.values()]

    # -- steps ---------------------------------------------------------------------------

    def fetch_once(self, limit: int | None = None) -> list[Job]:
        """Claim as many jobs as fit (at most ``claim_size``) into the buffer."""
        room = self.buffer.room()
        want = min(self.options.claim_size if limit is None else limit, room)
        if want <= 0:
            return []
        jobs = self.fetch_queries.dequeue(want, self.entrypoints, self.id, self.options.retry_timer)
        if jobs:
            with self._lock:
                for job in jobs:
                    self._held[job.id] = job
                self.stats.claimed += len(jobs)
            self.buffer.put_many(jobs)
        return jobs

    def run_job(self, job: Job) -> Outcome:
        """Run the handler of one job and queue its outcome for writing."""
        entry = self.registry.get(job.entrypoint)
        ctx = Context(job=job, worker_id=self.id)
        started = self.clock.monotonic()
        with self._lock:
            self._running[job.id] = _Running(job, started, ctx)
        token = _current_context.set(ctx)
        result: object = None
        try:
            if entry is None:  # pragma: no cover - only registered entrypoints are claimed
                raise LookupError(f"no handler for entrypoint {job.entrypoint!r}")
            result = entry.func(job, ctx) if entry.takes_context else entry.func(job)
        except BaseException as exc:
            status = JobStatus.EXCEPTION
            tb: str | None = traceback.format_exc()
            logger.warning(
                "job %d (%s) raised %s: %s", job.id, job.entrypoint, type(exc).__name__, exc
            )
        else:
            status = JobStatus.SUCCESSFUL
            tb = None
        finally:
            _current_context.reset(token)
            duration = max(0.0, self.clock.monotonic() - started)
            with self._lock:
                self._running.pop(job.id, None)
        outcome = Outcome(
            job_id=job.id,
            attempt=job.attempts,
            status=status,
            duration=duration,
            traceback=tb,
            result=result if isinstance(result, bytes) else None,
        )
        with self._lock:
            if status is JobStatus.SUCCESSFUL:
                self.stats.succeeded += 1
            else:
                self.stats.failed += 1
        self.completions.add(outcome)
        return outcome

    def flush(self, outcomes: list[Outcome] | None = None) -> set[JobId]:
        """Write outcomes (by default all pending ones) in one statement; return the ids
        recorded. Pending outcomes that fail to be written stay pending."""
        if outcomes is not None:
            return self._write(outcomes)
        batch = self.completions.take_all(0)
        try:
            return self._write(batch)
        except BaseException:
            self.completions.put_back(batch)
            raise

    def _write(self, outcomes: list[Outcome]) -> set[JobId]:
        with self._lock:
            # A job released at the shutdown deadline is no longer ours to finish.
            batch = [o for o in outcomes if o.job_id in self._held]
        if not batch:
            return set()
        recorded = self.complete_queries.complete(self.id, batch)
        fenced = [o.job_id for o in batch if o.job_id not in recorded]
        for job_id in fenced:
            logger.warning(
                "job %d: outcome discarded, the job was re-picked by another worker after "
                "this worker's heartbeat lapsed (retry_timer); its result there stands",
                job_id,
            )
        with self._lock:
            for o in batch:
                self._held.pop(o.job_id, None)
            self.stats.recorded += len(recorded)
            self.stats.fenced += len(fenced)
            idle = not self._held
        if idle:
            self.mailbox.post(Mailbox.IDLE)
        return recorded

    def beat(self) -> set[JobId]:
        """Refresh the heartbeat of every held job; return the ids still held in the table."""
        ids = set(self.held())
        if not ids:
            return set()
        alive = self.complete_queries.heartbeat(self.id, ids)
        with self._lock:
            lost = [i for i in ids - alive if i in self._held]
        for job_id in lost:
            logger.warning(
                "job %d is no longer held by this worker (re-picked after retry_timer, or "
                "cancelled); its outcome here will be discarded",
                job_id,
            )
        return alive

    def release(self, ids: set[JobId], unstarted: set[JobId]) -> set[JobId]:
        """Give held jobs back to the queue at once; forget them."""
        if not ids:
            return set()
        released = self.complete_queries.release(self.id, ids, unstarted)
        with self._lock:
            for job_id in ids:
                self._held.pop(job_id, None)
            self.stats.released += len(released)
        logger.info("released %d job(s) back to the queue", len(released))
        return released

    # -- threads -------------------------------------------------------------------------

    def _worker_thread(self) -> None:
        while True:
            try:
                job = self.buffer.take(timeout=5.0)
            except BufferClosed:
                return
            if job is not None:
                self.run_job(job)

    def _flusher_thread(self) -> None:
        retrying = reconnecting(
            "completion connection lost",
            sleep=self._hard_stop.wait,
            should_stop=self._hard_stop.is_set,
        )
        pending: list[Outcome] = []
        while True:
            wait = 0.0 if pending else max(0.0, self._next_beat - self.clock.monotonic())
            pending += self.completions.take_all(wait)
            try:
                for attempt in retrying:
                    with attempt:
                        if pending:
                            self.flush(pending)
                            pending = []
                        if self.clock.monotonic() >= self._next_beat:
                            self.beat()
                            self._next_beat = (
                                self.clock.monotonic() + self.options.heartbeat_interval
                            )
            except PgQueueError as exc:
                if self._hard_stop.is_set():
                    logger.error(
                        "giving up writing %d outcome(s): %s. Their jobs stay picked and run "
                        "again after retry_timer",
                        len(pending) + len(self.completions),
                        exc,
                    )
                    return
                logger.exception("could not write outcomes (%s); retrying", exc)
                self._hard_stop.wait(1.0)
                continue
            if self.completions.closed and not pending and not len(self.completions):
                return

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        """Fetch and run jobs until shutdown is requested (or, in drain mode, none is left)."""
        listener = Listener(
            self._listen_conn,
            statements(self.settings),
            on_event=self._on_event,
            on_connect=lambda: self.mailbox.post(Mailbox.WAKE),
            clock=self.clock,
        )
        try:
            self.fetch_queries.verify()
            self._complete_conn.raw()  # open it now: a bad DSN fails here, not mid-run
            listener.start()
            self._start_threads()
            try:
                self._fetch_loop()
            except BaseException:
                # KeyboardInterrupt (default SIGINT handler) or a fatal error: stop gracefully,
                # then let it propagate.
                self.shutdown_event.set()
                raise
            finally:
                self._shutdown()
        finally:
            listener.stop()
            self._fetch_conn.close()
            self._complete_conn.close()
            logger.info("worker %s stopped: %s", self.id, self.stats)

    def _start_threads(self) -> None:
        for n in range(self.options.workers):
            thread = threading.Thread(
                target=self._worker_thread, name=f"pgqueue-sync-worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._flusher = threading.Thread(
            target=self._flusher_thread, name="pgqueue-sync-flusher", daemon=True
        )
        self._flusher.start()
        logger.info(
            "worker %s started: entrypoints %s, %d threads, batch %d, buffer %d",
            self.id,
            ", ".join(self.entrypoints),
            self.options.workers,
            self.options.batch_size,
            self.options.buffer_size,
        )

    def _on_event(self, event: dict[str, Any]) -> None:
        self.mailbox.post(Mailbox.WAKE)

    def _stopping(self) -> bool:
        return self.shutdown_event.is_set()

    def _fetch_loop(self) -> None:
        retrying = reconnecting(
            "fetch connection lost",
            sleep=self.mailbox.wait,
            should_stop=self._stopping,
        )
        want = self.options.claim_size
        while not self._stopping():
            if self.buffer.room() < want:
                self.mailbox.wait(self.options.dequeue_timeout)
                continue
            self.mailbox.drain()
            try:
                for attempt in retrying:
                    with attempt:
                        jobs = self.fetch_once()
                        idle_for = self._idle_timeout() if not jobs else 0.0
            except CONNECTION_ERRORS:
                if self._stopping():
                    return
                raise
            if jobs:
                continue
            if self.options.mode == "drain" and not self.held():
                logger.info("drain mode: no job is due and none is held; stopping")
                return
            self.mailbox.wait(idle_for)

    def _idle_timeout(self) -> float:
        timeout = self.options.dequeue_timeout
        if self.options.retry_timer is not None:
            timeout = min(timeout, self.options.retry_timer.total_seconds())
        due = self.fetch_queries.next_due(self.entrypoints)
        if due is not None:
            # <= 0: a due job was skipped because another worker is claiming it.
            timeout = min(timeout, max(due, 0.1))
        return timeout

    def _shutdown(self) -> None:
        timeout = self.options.shutdown_timeout
        deadline = None if timeout is None else self.clock.monotonic() + timeout
        # Running and buffered jobs finish (the worker threads keep going) ...
        while self.held():
            remaining = None if deadline is None else deadline - self.clock.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self.mailbox.wait(0.5 if remaining is None else min(0.5, remaining))
        # ... and past the deadline, what has not finished goes back to the queue at once.
        if self.held():
            unstarted = {job.id for job in self.buffer.drain()}
            with self._lock:
                running = set(self._running)
            try:
                self.release(unstarted | running, unstarted)
            except PgQueueError as exc:
                logger.error(
                    "could not release %d job(s) at shutdown (%s); they run again after "
                    "retry_timer",
                    len(unstarted | running),
                    exc,
                )
            if running:
                logger.warning(
                    "shutdown deadline passed with %d handler(s) still running; their jobs "
                    "were released and their threads abandoned",
                    len(running),
                )
        self.buffer.close()
        for thread in self._threads:
            thread.join(None if deadline is None else max(0.1, deadline - self.clock.monotonic()))
        self.completions.close()
        if self._flusher is not None:
            self._flusher.join(10.0)
            if self._flusher.is_alive():
                self._hard_stop.set()
                self._flusher.join(5.0)
