"""The engine of one ``QueueManager.run()``: fetcher, worker threads, flusher, listener.

Data flow: the fetcher (the thread that called ``run()``) claims jobs into the bounded
:class:`JobBuffer`; worker threads take them and call the handlers; outcomes go to the
:class:`CompletionBuffer`, which the flusher thread writes in batches, fenced by worker id
and attempt. The flusher also refreshes the heartbeat of every held job (buffered, running
or finished-but-unwritten), so ``retry_timer`` only ever re-picks jobs of dead workers.

The steps themselves (``fetch_once``, ``run_job``, ``flush``, ``beat``, ``release``) live in
:mod:`pgqueue_sync.steps`, so a test can drive a worker one step at a time without threads.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from typing import Any

from .buffer import BufferClosed, Mailbox
from .errors import PgQueueError, SchemaNotInstalledError, SchemaVersionError
from .listener import Listener
from .queries import Outcome
from .retry import CONNECTION_ERRORS, reconnecting
from .sql import statements
from .steps import FETCH_SESSION, WorkerStats, WorkerSteps

__all__ = ["FETCH_SESSION", "Worker", "WorkerStats"]

logger = logging.getLogger("pgqueue_sync")

PRUNE_INTERVAL = 60.0

# With no shutdown_timeout, how long the outcomes of finished jobs may take to be written
# once every handler has returned (a database that refuses them cannot hold run() forever).
FLUSH_GRACE = 10.0

# Outcomes fewer than GATHER_BELOW wait GATHER_SECONDS for more before they are written.
GATHER_BELOW = 64
GATHER_SECONDS = 0.002


def backoff(failures: int) -> float:
    """Seconds before the next try after ``failures`` failed ones: 50 ms doubling to 2 s,
    with jitter so that many workers do not retry in step."""
    return float(min(2.0, 0.05 * 2 ** min(failures - 1, 6))) + random.uniform(0, 0.05)


class Worker(WorkerSteps):
    """One run of a QueueManager: the steps of :class:`WorkerSteps` driven by threads."""

    # -- threads -------------------------------------------------------------------------

    def _worker_thread(self) -> None:
        me = threading.get_ident()
        try:
            while True:
                try:
                    job = self.buffer.take(timeout=5.0)
                except BufferClosed:
                    return
                if job is not None:
                    self.run_job(job)
                    if self._retired and self._retire_if_abandoned(me):
                        return
        finally:
            self._thread_ended(me)

    def _flusher_thread(self) -> None:
        """Write outcomes, refresh heartbeats, watch timeouts and cancellations, until the
        completion buffer is closed and empty. Never dies: a write that fails is retried
        with a backoff while heartbeats go on; at a hard stop what is left is given up."""
        pending: list[Outcome] = []
        uncertain = False
        failures = 0
        retry_at = 0.0
        while True:
            if self._hard_stop.is_set():
                self._give_up(pending + self.completions.take_all(0))
                return
            try:
                timeout_in = self.check_timeouts()
            except Exception as exc:
                self._flusher_error("checking handler timeouts", exc)
                timeout_in = None
            now = self.clock.monotonic()
            wake_at = min(retry_at, self._next_beat) if pending else self._next_beat
            wait = max(0.0, wake_at - now)
            if timeout_in is not None:
                wait = min(wait, timeout_in)
            if self._cancel_checks:
                wait = 0.0
            pending += self.completions.take_all(wait)
            if 0 < len(pending) < GATHER_BELOW and not self.completions.closed and not failures:
                # Group commit: a few outcomes wait a moment for more, so one statement and
                # one commit serve more jobs and the server has more CPU left for claims.
                self._hard_stop.wait(GATHER_SECONDS)
                pending += self.completions.take_all(0)
            if pending and self.clock.monotonic() >= retry_at:
                try:
                    self.flush(pending, uncertain=uncertain)
                    pending, uncertain, failures = [], False, 0
                except Exception as exc:
                    uncertain = uncertain or isinstance(exc, CONNECTION_ERRORS)
                    failures += 1
                    delay = backoff(failures)
                    retry_at = self.clock.monotonic() + delay
                    self._flusher_error(
                        f"writing {len(pending)} outcome(s) (retrying in {delay:.2f} s)", exc
                    )
            try:
                self._check_cancellations()
                self._periodic()
            except Exception as exc:
                self._flusher_error("refreshing heartbeats", exc)
            if self.completions.closed and not pending and not len(self.completions):
                return

    def _flusher_error(self, doing: str, exc: Exception) -> None:
        if isinstance(exc, (SchemaNotInstalledError, SchemaVersionError)):
            self.fail(exc)
            return
        if isinstance(exc, CONNECTION_ERRORS):
            logger.warning("%s: %s", doing, exc)
        else:
            logger.error("%s: %s", doing, exc, exc_info=not isinstance(exc, PgQueueError))

    def _give_up(self, outcomes: list[Outcome]) -> None:
        """The run is over and these outcomes could not be written: say so, loudly."""
        with self._lock:
            ids = sorted({o.job_id for o in outcomes if self._holds(o.job_id, o.attempt)})
        if ids:
            shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
            logger.error(
                "stopping with %d outcome(s) unwritten (jobs %s): the jobs stay picked and "
                "run again after retry_timer (%s)",
                len(ids),
                shown,
                self.options.retry_timer,
            )

    def _watch_connections(self) -> None:
        self._fetch_conn.abort_if_stalled()
        self._complete_conn.abort_if_stalled()

    def _periodic(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_beat:
            self.beat()
            # Proves to this worker's listener that its LISTEN still delivers (and fails
            # with SchemaNotInstalledError once the queue's tables are gone).
            self.complete_queries.notify(self._probe)
            self._next_beat = self.clock.monotonic() + self.options.heartbeat_interval
        if self.options.log_retention is not None and now >= self._next_prune:
            pruned = self.prune()
            if pruned:
                logger.info(
                    "pruned %d log row(s) older than %s", pruned, self.options.log_retention
                )
            self._next_prune = self.clock.monotonic() + PRUNE_INTERVAL

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        """Fetch and run jobs until shutdown is requested (or, in drain mode, none is left)."""
        listener = Listener(
            self._listen_conn,
            statements(self.settings),
            on_event=self._on_event,
            on_connect=self._on_listen,
            clock=self.clock,
            probe_id=str(self.id),
            probe_interval=self.options.heartbeat_interval,
            watch=self._watch_connections,
            listening=self.listening,
        )
        if not self.listening:
            logger.warning(
                "LISTEN does not work through a pooler in transaction mode and the driver has "
                "no listen_dsn: this worker polls, so a new job may wait up to "
                "dequeue_timeout (%g s) before it starts, and cancellations reach running "
                "jobs with the heartbeat. Pass PsycopgDriver(..., listen_dsn=<a conninfo "
                "straight to PostgreSQL>) to be woken at once",
                self.options.dequeue_timeout,
            )
        try:
            self.fetch_queries.verify()
            if self.fetch_queries.ensure_statistics():
                logger.info("analyzed the queue table: it held jobs but had no statistics yet")
            self._complete_conn.raw()  # open it now: a bad DSN fails here, not mid-run
            limited = [e.name for e in self.limited if e.globally_limited]
            if limited:
                self.fetch_queries.ensure_limit_rows(limited)
            listener.start()
            self._start_threads()
            try:
                self._fetch_loop()
            except BaseException as exc:
                # KeyboardInterrupt (default SIGINT handler) or a fatal error: stop gracefully,
                # then let it propagate.
                if isinstance(exc, (SchemaNotInstalledError, SchemaVersionError)):
                    self.fail(exc)
                self.shutdown_event.set()
                raise
            finally:
                self._shutdown()
            if self.fatal is not None:
                raise self.fatal
        finally:
            usable = self.fatal is None and not self._hard_stop.is_set()
            listener.stop(
                wake=(lambda: self.complete_queries.notify(self._probe)) if usable else None
            )
            self._fetch_conn.close()
            self._complete_conn.close()
            logger.info("worker %s stopped: %s", self.id, self.stats)

    def _add_threads(self, count: int) -> None:
        """Start ``count`` handler threads (at the start, and to replace stuck ones)."""
        for _ in range(count):
            if self.buffer.closed:
                return
            thread = threading.Thread(
                target=self._worker_thread,
                name=f"pgqueue-sync-worker-{next(self._thread_names)}",
                daemon=True,
            )
            with self._lock:
                self._threads.append(thread)
                self._live += 1
            thread.start()
        self.mailbox.post(Mailbox.ROOM)

    def _retire_if_abandoned(self, ident: int) -> bool:
        """Whether this handler thread was retired (its handler ran past its timeout)."""
        with self._lock:
            return ident in self._retired

    def _thread_ended(self, ident: int) -> None:
        with self._lock:
            if ident in self._retired:
                self._retired.discard(ident)
            else:
                self._live -= 1
            self._threads = [t for t in self._threads if t.ident != ident]
            missing = self.options.workers - self._live
        # A stuck handler returned at last: its thread ends, and one takes its place if
        # the worker is short of threads.
        if missing > 0 and not self.buffer.closed:
            self._add_threads(1)

    def _start_threads(self) -> None:
        self._add_threads(self.options.workers)
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
        """A NOTIFY is only ever a hint: anyone who can connect can send one. Wake-ups lead
        to a claim, which reads the table; a cancellation is acted on only once the flusher
        has read ``cancel_requested`` from the table for the jobs this worker holds."""
        kind = event.get("type")
        if kind == "cancel":
            ids = event.get("ids")
            if isinstance(ids, list):
                self.check_cancellations([i for i in ids if type(i) is int])
            return
        if kind == "done":
            # Someone's job finished: only interesting if it frees a limited entrypoint.
            names = event.get("entrypoints")
            if self._blocked and self._unblock(names if isinstance(names, list) else None):
                self.mailbox.post(Mailbox.WAKE)
            return
        self.mailbox.post(Mailbox.WAKE)

    def _on_listen(self) -> None:
        # Events sent while the listener was away are lost: poll everything once.
        self._unblock()
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
        rechecked = False
        while not self._stopping():
            tick_in = self.scheduler.tick()  # enqueue the schedules' due ticks
            if self.buffer.room() < want or not self.can_start():
                # Full, or every handler thread is stuck: nothing more can start here.
                self.mailbox.wait(min(self.options.dequeue_timeout, tick_in))
                continue
            self.mailbox.drain()
            # A job held during the claim may have gone back to the queue (a retry) after
            # the claim looked: the queue is drained only if nothing was held then either.
            held_during_claim = bool(self.held())
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
                rechecked = False
                continue
            if self.options.mode == "drain" and not self.held():
                if held_during_claim:
                    continue
                # Entrypoints skipped as full may have room now that nothing is held: look
                # once more before calling the queue drained.
                if not rechecked and self._unblock():
                    rechecked = True
                    continue
                logger.info("drain mode: no job is due and none is held; stopping")
                return
            self.mailbox.wait(idle_for)

    def _idle_timeout(self) -> float:
        """How long to sleep after an empty claim (NOTIFY ends the sleep sooner)."""
        timeout = min(self.options.dequeue_timeout, self.scheduler.due_in())
        if self.options.retry_timer is not None:
            timeout = min(timeout, self.options.retry_timer.total_seconds())
        now = self.clock.monotonic()
        blocked = dict(self._blocked)
        for until, _ in blocked.values():
            timeout = min(timeout, max(0.0, until - now))
        open_entrypoints = [name for name in self.entrypoints if name not in blocked]
        due = self.fetch_queries.next_due(open_entrypoints)
        if due is not None:
            # <= 0: a due job was skipped because another worker is claiming it.
            timeout = min(timeout, max(due, 0.1))
        return max(0.0, timeout)

    def _shutdown(self) -> None:
        """Stop: held jobs finish (until ``shutdown_timeout``), what is left goes back to the
        queue, outcomes are written. Returns by the deadline plus about a second, whatever
        the database and the handlers do; with no deadline, it waits for running handlers
        (not for those past their own timeout) and then gives the writes FLUSH_GRACE."""
        timeout = self.options.shutdown_timeout
        deadline = None if timeout is None else self.clock.monotonic() + timeout

        def remaining() -> float | None:
            return None if deadline is None else deadline - self.clock.monotonic()

        # Running and buffered jobs finish (the worker threads keep going) ...
        while self.fatal is None and self.held():
            left = remaining()
            if left is not None and left <= 0:
                break
            if left is None and not self.unfinished():
                break  # only outcomes left to write: the flusher's grace below
            self.mailbox.wait(0.5 if left is None else min(0.5, left))
        # ... and past the deadline, what has not finished goes back to the queue at once.
        unstarted = {job.id for job in self.buffer.drain()}
        with self._lock:
            running = {job_id for job_id, _ in self._running}
            self._abandoned.update(self._running)
        if (unstarted or running) and self.fatal is None:
            try:
                self.release(unstarted | running, unstarted)
            except PgQueueError as exc:
                logger.error(
                    "could not release %d job(s) at shutdown (%s); they run again after "
                    "retry_timer (%s)",
                    len(unstarted | running),
                    exc,
                    self.options.retry_timer,
                )
            if running:
                logger.warning(
                    "shutdown deadline passed with %d handler(s) still running; their jobs "
                    "were released and their threads abandoned",
                    len(running),
                )
        self.buffer.close()
        if self.fatal is None:
            with self._lock:
                # Threads stuck past their handler's timeout (retired) are not waited for.
                threads = [t for t in self._threads if t.ident not in self._retired]
            ends = None if deadline is None else time.monotonic() + max(0.1, remaining() or 0.0)
            for thread in threads:
                thread.join(None if ends is None else max(0.0, ends - time.monotonic()))
        self.completions.close()
        if self._flusher is not None:
            grace = 0.0 if self.fatal is not None else FLUSH_GRACE if deadline is None else 0.3
            self._flusher.join(max(grace, remaining() or 0.0) if deadline is not None else grace)
            if self._flusher.is_alive():
                self._hard_stop.set()
                self._complete_conn.abort()  # a write blocked on the server ends now
                self._flusher.join(0.3)
