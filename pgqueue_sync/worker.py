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
import threading
from typing import Any

from .buffer import BufferClosed, Mailbox
from .errors import PgQueueError
from .listener import Listener
from .queries import Outcome
from .retry import CONNECTION_ERRORS, reconnecting
from .sql import statements
from .steps import FETCH_SESSION, WorkerStats, WorkerSteps

__all__ = ["FETCH_SESSION", "Worker", "WorkerStats"]

logger = logging.getLogger("pgqueue_sync")

PRUNE_INTERVAL = 60.0

# Outcomes fewer than GATHER_BELOW wait GATHER_SECONDS for more before they are written.
GATHER_BELOW = 64
GATHER_SECONDS = 0.002


class Worker(WorkerSteps):
    """One run of a QueueManager: the steps of :class:`WorkerSteps` driven by threads."""

    # -- threads -------------------------------------------------------------------------

    def _worker_thread(self) -> None:
        me = threading.get_ident()
        while True:
            try:
                job = self.buffer.take(timeout=5.0)
            except BufferClosed:
                return
            if job is not None:
                self.run_job(job)
                if self._retired:  # rarely: no lock taken per job otherwise
                    with self._lock:
                        if me in self._retired:  # abandoned at a timeout and replaced
                            self._retired.discard(me)
                            return

    def _flusher_thread(self) -> None:
        retrying = reconnecting(
            "completion connection lost",
            sleep=self._hard_stop.wait,
            should_stop=self._hard_stop.is_set,
        )
        pending: list[Outcome] = []
        uncertain = False
        while True:
            timeout_in = self.check_timeouts()
            wait = 0.0 if pending else max(0.0, self._next_beat - self.clock.monotonic())
            if timeout_in is not None:
                wait = min(wait, timeout_in)
            pending += self.completions.take_all(wait)
            if 0 < len(pending) < GATHER_BELOW and not self.completions.closed:
                # Group commit: a few outcomes wait a moment for more, so one statement and
                # one commit serve more jobs and the server has more CPU left for claims.
                self._hard_stop.wait(GATHER_SECONDS)
                pending += self.completions.take_all(0)
            try:
                for attempt in retrying:
                    with attempt:
                        if pending:
                            try:
                                self.flush(pending, uncertain=uncertain)
                            except CONNECTION_ERRORS:
                                uncertain = True
                                raise
                            pending = []
                            uncertain = False
                        self._periodic()
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

    def _watch_connections(self) -> None:
        self._fetch_conn.abort_if_stalled()
        self._complete_conn.abort_if_stalled()

    def _periodic(self) -> None:
        now = self.clock.monotonic()
        if now >= self._next_beat:
            self.beat()
            if self.listening:
                # Proves to this worker's listener that its LISTEN still delivers.
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
            except BaseException:
                # KeyboardInterrupt (default SIGINT handler) or a fatal error: stop gracefully,
                # then let it propagate.
                self.shutdown_event.set()
                raise
            finally:
                self._shutdown()
        finally:
            listener.stop(wake=lambda: self.complete_queries.notify(self._probe))
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
            thread.start()
            with self._lock:
                self._threads.append(thread)

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
        kind = event.get("type")
        if kind == "cancel":
            ids = event.get("ids")
            if isinstance(ids, list):
                self.cancel([i for i in ids if isinstance(i, int)])
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
            if self.buffer.room() < want:
                self.mailbox.wait(self.options.dequeue_timeout)
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
        timeout = self.options.dequeue_timeout
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
                running = {job_id for job_id, _ in self._running}
                self._abandoned.update(self._running)
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
        with self._lock:
            # A thread stuck past its handler's timeout may never return: not waited for.
            threads = [t for t in self._threads if t.ident not in self._retired]
        for thread in threads:
            thread.join(None if deadline is None else max(0.1, deadline - self.clock.monotonic()))
        self.completions.close()
        if self._flusher is not None:
            self._flusher.join(10.0)
            if self._flusher.is_alive():
                self._hard_stop.set()
                self._flusher.join(5.0)
