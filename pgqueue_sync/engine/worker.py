"""The worker: one ``QueueManager.run()``. It wires the stages and runs the fetch loop.

A job's path through them: the fetcher claims it into the bounded buffer (a NOTIFY from the
listener wakes the fetch loop when jobs are enqueued, or, while the loop sleeps, the listener
claims at once on its own connection); a runner thread takes it and runs its handler; the
flusher writes its outcome, fenced, and keeps the heartbeat of every held job fresh
meanwhile. The ledger records what the worker holds; the stages share it and nothing else,
and call each other only through the callbacks wired here.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Mapping

from pgqueue_sync import events
from pgqueue_sync.clock import Clock
from pgqueue_sync.connection import worker_connections
from pgqueue_sync.db import Driver
from pgqueue_sync.errors import (
    ConfigurationError,
    PgQueueError,
    SchemaNotInstalledError,
    SchemaVersionError,
)
from pgqueue_sync.models import Job, JobId, WorkerStats
from pgqueue_sync.options import RunOptions
from pgqueue_sync.registry import Entrypoint
from pgqueue_sync.retry import CONNECTION_ERRORS, reconnecting
from pgqueue_sync.settings import Settings
from pgqueue_sync.sql import statements
from pgqueue_sync.translate import translate_errors

from .buffer import CompletionBuffer, JobBuffer, Mailbox
from .fetcher import Fetcher
from .flusher import Flusher
from .hooks import HookList
from .ledger import Ledger, LedgerSnapshot
from .listener import Listener
from .presence import Presence
from .rescue import Rescue
from .runner import Runner
from .scheduler import Scheduler
from .shutdown import FLUSH_GRACE, Shutdown
from .store import Store

__all__ = ["FLUSH_GRACE", "Worker"]

logger = logging.getLogger(__name__)


class Worker:
    """One run of a QueueManager (see the module docstring). Its stages are public, so a
    test can drive them one step at a time without threads: ``fetcher.fetch_once()``,
    ``runner.run_job(job)``, ``flusher.flush()``, ``flusher.beat()``, ``release(...)``."""

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
        hooks: HookList | None = None,
    ) -> None:
        if not registry:
            raise ConfigurationError(
                "no entrypoint is registered: decorate a handler with @qm.entrypoint(name)"
            )
        self.id = uuid.uuid4()
        self.options = options
        self.settings = settings
        self.clock = clock
        self.shutdown_event = shutdown
        self.mailbox = mailbox
        self.entrypoints = sorted(registry)
        self.hooks = hooks if hooks is not None else HookList()
        # The error that ended this run early (the queue's tables are gone, or changed).
        self.fatal: PgQueueError | None = None
        # Whether prepare() analyzed the queue table (None: not known yet).
        self._statistics_checked: bool | None = None
        # Through a transaction pooler the fetch session's settings are not sent (see the
        # fetch_session statement).
        pooled = driver.transaction_pooling
        session = () if pooled else (statements(settings).fetch_session,)
        self.connections = worker_connections(
            driver,
            self.id.hex[:8],
            fetch_setup=session,
            on_reconnect=self.hooks.reconnected if self.hooks else None,
        )
        # False through a transaction pooler without listen_dsn: the worker polls.
        self.listening = driver.can_listen
        # Without the session's settings, each claim turns synchronous_commit off itself.
        self.fetch_store = Store(self.connections["fetch"], settings, clock=clock)
        self.fetch_store.async_commit_claims = pooled
        self.store = Store(self.connections["complete"], settings, clock=clock)
        # Claims on the listening connection (claim_on_listener), with the fetch session's
        # settings (or, through a pooler, each claim's own, as on the fetch connection).
        self.listen_store = Store(self.connections["listen"], settings, clock=clock)
        self.listen_store.async_commit_claims = pooled
        # One claim at a time, by the fetch loop or by the listener.
        self._claiming = threading.Lock()
        # Whether the fetch loop sleeps after an empty claim (a wake-up may then claim on
        # the listener's thread); False for good once the run stops (close_claims).
        self._fetch_asleep = False
        self.ledger = Ledger(self.id)
        self.buffer = JobBuffer(
            options.buffer_size,
            watermark=options.claim_size,
            on_room=lambda: mailbox.post(Mailbox.ROOM),
        )
        self.completions = CompletionBuffer()
        # The workers registry's row and the paused entrypoints.
        self.presence = Presence(
            worker_id=self.id,
            entrypoints=self.entrypoints,
            store=self.store,
            ledger=self.ledger,
            buffer=self.buffer,
            release=self.release,
            wake=self.completions.poke,
            options=options,
            clock=clock,
        )
        # Periodic jobs: the fetch loop enqueues their due ticks, on the fetch connection.
        self.scheduler = Scheduler.over(self.connections["fetch"], settings, clock, registry)
        self.runner = Runner(
            registry=registry,
            ledger=self.ledger,
            buffer=self.buffer,
            completions=self.completions,
            mailbox=mailbox,
            rescue=Rescue(
                worker_id=self.id,
                store=self.store,
                ledger=self.ledger,
                completions=self.completions,
                release=self.release,
                stopping=shutdown,
            ),
            presence=self.presence,
            options=options,
            clock=clock,
            max_result_bytes=settings.max_payload_bytes,
            # Only a limited entrypoint's blocked claim waits for a job to end here.
            on_done=self._job_done if any(e.limited for e in registry.values()) else None,
            release=self.release,
            hooks=self.hooks,
        )
        self.fetcher = Fetcher(
            worker_id=self.id,
            registry=registry,
            store=self.fetch_store,
            ledger=self.ledger,
            buffer=self.buffer,
            options=options,
            clock=clock,
            can_start=self.runner.can_start,
            next_tick=self.scheduler.due_in,
            hooks=self.hooks,
        )
        self._probe = probe = events.encode(events.Probe(str(self.id)))
        self.flusher = Flusher(
            worker_id=self.id,
            store=self.store,
            ledger=self.ledger,
            completions=self.completions,
            mailbox=mailbox,
            options=options,
            clock=clock,
            watch=self._flusher_watch,
            # Proves to this worker's listener that its LISTEN still delivers, and fails
            # with SchemaNotInstalledError once the queue's tables are gone.
            probe=lambda: self.store.notify(probe),
            fail=self.fail,
            abort=self.connections["complete"].abort,
            hooks=self.hooks,
            chores=[self.presence],
        )

    # -- observation ---------------------------------------------------------------------

    @property
    def stats(self) -> WorkerStats:
        return self.ledger.stats

    @property
    def stuck_threads(self) -> int:
        """Handler threads still running a job that was failed for exceeding its timeout."""
        return self.ledger.stuck

    def snapshot(self) -> LedgerSnapshot:
        """What the worker holds now: buffered, running, finished but unwritten."""
        return self.ledger.snapshot(self.buffer.jobs)

    @property
    def fetch_loop_asleep(self) -> bool:
        """Whether the fetch loop sleeps after an empty claim (a wake-up then claims on the
        listener's thread)."""
        return self._fetch_asleep

    def stopping(self) -> bool:
        """Whether a stop was requested (``qm.alive = False``, or a fatal error)."""
        return self.shutdown_event.is_set()

    # -- steps shared by the stages --------------------------------------------------------

    def release(self, job_ids: set[JobId], unstarted: set[JobId]) -> set[JobId]:
        """Give held jobs back to the queue at once (unstarted ones keep their attempt
        count); stop holding them."""
        if not job_ids:
            return set()
        attempts = self.ledger.attempts_of(job_ids)
        released = self.store.release(self.id, job_ids, unstarted)
        self.ledger.forget(attempts)
        self.ledger.count(released=len(released))
        if self.hooks:
            self.hooks.released(sorted(released))
            self.hooks.jobs_forgotten()
        logger.info("released %d job(s) back to the queue", len(released))
        return released

    def fail(self, error: PgQueueError) -> None:
        """End the run with ``error`` (the first one wins): stop fetching now."""
        if self.fatal is None:
            logger.error("stopping the worker: %s", error)
            self.fatal = error
        self.shutdown_event.set()
        self.mailbox.post(Mailbox.STOP)

    def on_event(self, event: events.Event) -> bool:
        """A NOTIFY, as a hint: anyone who can connect can send one. A wake-up leads to a
        claim, which reads the table; a cancellation to a read of ``cancel_requested`` for
        the jobs this worker holds; a finished job of a limited entrypoint to another try;
        a pause or resume to a read of the paused entrypoints (and a claim).

        True: the listener is to claim on its own thread (:meth:`claim_on_listener`), for
        an insert, requeue, pause or resume while the fetch loop sleeps."""
        if isinstance(event, events.Cancel):
            self.flusher.check_cancellations(list(event.ids))
        elif isinstance(event, events.Done):
            if self.fetcher.blocked and self.fetcher.unblock(event.entrypoints):
                self.mailbox.post(Mailbox.WAKE)
        else:
            if isinstance(event, (events.Pause, events.Resume)):
                self.presence.hint()
            known = not isinstance(event, events.Unknown)  # not another version's, or garbage
            if known and self._fetch_asleep and self.options.mode == "continuous":
                return True
            self.mailbox.post(Mailbox.WAKE)
        return False

    def claim_on_listener(self) -> None:
        """Claim on the listening connection, on the listener's thread, after a wake-up
        that came while the fetch loop sleeps: the listener's backend has just sent the
        NOTIFY and its thread has just read it, both awake, where the fetch loop's thread
        and backend would each have to wake first (about a third of an idle worker's
        pick-up time; docs/benchmarks.md).

        It is one claim as the fetch loop makes it (``Fetcher.fetch_once``), under the same
        lock and on the same conditions. The fetch loop is woken to look itself when the
        claim could not be made here (the loop is awake, the run stops, or the buffer has
        no room for a whole claim), when it claimed nothing (no thread was free to start
        a job, or the wake-up was a deferred job's: the loop's sleep must be sized again),
        when it filled a whole claim (more may be due) and when it failed (a connection
        error is raised again: the listener reconnects). While the fetch loop sleeps, the
        listener nudges the threads the jobs it claimed need, as the fetch loop would
        (``_listener_watch``).
        """
        if not self._claiming.acquire(blocking=False):
            self.mailbox.post(Mailbox.WAKE)  # the fetch loop claims now
            return
        try:
            want = self.options.claim_size
            if (
                not self._fetch_asleep
                or self.stopping()
                # What the fetch loop waits for before it claims: room for a whole claim
                # (fetch_once itself claims nothing while no thread is free to start it).
                or self.buffer.room() < want
            ):
                self.mailbox.post(Mailbox.WAKE)
                return
            try:
                with translate_errors():
                    jobs = self.fetcher.fetch_once(store=self.listen_store)
            except CONNECTION_ERRORS:
                self.mailbox.post(Mailbox.WAKE)
                raise
            except Exception as exc:  # the fetch loop claims again and meets it itself
                logger.debug("claim on the listener's connection failed: %s", exc)
                self.mailbox.post(Mailbox.WAKE)
                return
            if not jobs or len(jobs) >= want:
                self.mailbox.post(Mailbox.WAKE)
        finally:
            self._claiming.release()

    def close_claims(self) -> None:
        """No claim starts after this, on any thread; one under way has ended (before the
        shutdown releases what the buffer holds). Called once the fetch loop has returned:
        nothing sets ``_fetch_asleep`` again."""
        with self._claiming:
            self._fetch_asleep = False

    def _on_listen(self) -> None:
        # Events sent while the listener was away are lost: poll everything once, and read
        # the paused entrypoints.
        self.presence.hint()
        self.fetcher.unblock()
        self.mailbox.post(Mailbox.WAKE)

    def _flusher_watch(self) -> float | None:
        # The listener watches the other connections, but not its own while it claims on
        # it: the flusher does.
        self.connections["listen"].abort_if_stalled()
        return self.runner.check_timeouts()

    def _job_done(self, job: Job) -> None:
        # A finished job of a limited entrypoint may free a slot for the next claim.
        if self.fetcher.job_done(job.entrypoint):
            self.mailbox.post(Mailbox.WAKE)

    # -- the run -------------------------------------------------------------------------

    def run(self) -> None:
        """Fetch and run jobs until shutdown is requested (or, in drain mode, none is left).

        Raises SchemaNotInstalledError (or SchemaVersionError) if the queue's tables are
        dropped or changed under it, once it has stopped.
        """
        listener = Listener(
            self.connections["listen"],
            statements(self.settings),
            on_event=self.on_event,
            on_connect=self._on_listen,
            clock=self.clock,
            probe_id=str(self.id),
            probe_interval=self.options.heartbeat_interval,
            watch=self._listener_watch,
            listening=self.listening,
            hear_done=self.fetcher.hears_done,
            claim=self.claim_on_listener,
        )
        try:
            self.prepare()
            listener.start()
            self.runner.start(self.options.workers)
            self.flusher.start()
            self.presence.start()  # registers the worker, logs that it started
            self.hooks.worker_started(self)
            try:
                self.fetch_loop()
            except BaseException as exc:
                # KeyboardInterrupt (default SIGINT handler) or a fatal error: stop gracefully,
                # then let it propagate.
                if isinstance(exc, (SchemaNotInstalledError, SchemaVersionError)):
                    self.fail(exc)
                self.shutdown_event.set()
                raise
            finally:
                self.close_claims()
                self.shutdown()
            if self.fatal is not None:
                raise self.fatal
        finally:
            usable = self.fatal is None and not self.flusher.stopped_hard
            if usable:
                self.presence.stop()
            listener.stop(wake=(lambda: self.store.notify(self._probe)) if usable else None)
            for conn in self.connections.values():
                conn.close()
            logger.info("worker %s stopped: %s", self.id, self.stats)
            self.hooks.worker_stopped(self.stats)

    def prepare(self) -> None:
        """Check the queue before the first claim: the schema is installed and of this
        version, the statistics exist, the limits rows of limited entrypoints are there, the
        outcome connection opens. ``run()`` calls it; so does a worker driven by hand."""
        # The outcome and listen connections open, and the statistics are looked at (over
        # the outcome connection), while the fetch connection checks the schema: three
        # connection set-ups and their round trips overlap instead of following one another.
        side = threading.Thread(target=self._prepare_side, name="pgqueue-sync-prepare")
        side.start()
        try:
            self.fetch_store.verify()
        finally:
            side.join()
        if self._statistics_checked is None:  # it failed there: again here, errors raised
            self._statistics_checked = self.fetch_store.ensure_statistics()
        if self._statistics_checked:
            logger.info("analyzed the queue table: it held jobs but had no statistics yet")
        self.connections["complete"].raw()  # open it now: a bad DSN fails here, not mid-run
        limited = self.fetcher.globally_limited
        if limited:
            self.fetch_store.ensure_limit_rows(limited)
        if not self.listening:
            logger.warning(
                "worker %s cannot LISTEN (a pooler in transaction mode and no listen_dsn): it "
                "polls, so a new job may wait up to dequeue_timeout (%g s) to be picked up and "
                "a cancellation reaches a running job with the next heartbeat; pass "
                "PsycopgDriver(..., listen_dsn=<a conninfo straight to PostgreSQL>) to be "
                "woken at once",
                self.id,
                self.options.dequeue_timeout,
            )

    def _prepare_side(self) -> None:
        """:meth:`prepare`'s work off the fetch connection; errors are left for it to raise."""
        self._statistics_checked = None
        try:
            self._statistics_checked = self.store.ensure_statistics()
            if self.listening:
                self.connections["listen"].raw()
        except Exception as exc:  # raised again by prepare() or Listener.start, in the caller
            logger.debug("preparing the worker's connections: %s", exc)

    def _stop_seen(self) -> bool:
        """Whether to stop fetching; tells the hooks the first time it is so."""
        if not self.stopping():
            return False
        self.hooks.stop_seen()
        return True

    def _listener_watch(self) -> float | None:
        """The listener's turn: the connections watched, and, while the fetch loop sleeps,
        the buffered jobs nudged (``JobBuffer.nudge``: handlers that usually return at once
        leave jobs to the awake thread, and one that runs long instead must not hold the
        others back); the seconds until the next nudge is due."""
        self._watch_connections()
        return self.buffer.nudge() if self._fetch_asleep else None

    def _watch_connections(self) -> None:
        for conn in self.connections.values():
            conn.abort_if_stalled()

    def fetch_loop(self) -> None:
        """Claim while there is room and a thread to start the jobs; sleep when there is
        nothing to claim, until a NOTIFY, room, or the idle timeout."""
        retrying = reconnecting(
            "fetch connection lost", sleep=self.mailbox.wait, should_stop=self.stopping
        )
        want = self.options.claim_size
        rechecked = False
        while not self._stop_seen():
            tick_in = self.scheduler.tick()  # enqueue the schedules' due ticks
            # Buffered jobs waiting while threads sleep (the awake ones run handlers that
            # usually return at once): wakes them after a while, and says when to look again.
            nudge_in = self.buffer.nudge()
            if self.buffer.room() < want or not self.runner.can_start():
                # Full, or every handler thread is stuck: nothing more can start here.
                self.mailbox.wait(min(self.options.dequeue_timeout, tick_in, nudge_in))
                continue
            self.mailbox.drain()
            # A job held during the claim may have gone back to the queue (a retry) after
            # the claim looked: the queue is drained only if nothing was held then either.
            held_during_claim = self.ledger.any_held()
            # Entrypoints the claim skips as full: a job finishing meanwhile may unblock them
            # before the drain check below, which must then look once more all the same.
            skipped_full = any(kind == "slots" for _, kind in self.fetcher.blocked.values())
            filled = False
            try:
                for attempt in retrying:
                    with attempt, self._claiming:
                        # The listener may have claimed while this thread waited for the
                        # lock: room for a whole claim is looked at again, under it.
                        filled = self.buffer.room() < want
                        if filled:
                            break
                        jobs = self.fetcher.fetch_once()
                        # Not when a drain ends here (nothing held: nothing can be held
                        # again but by this thread): the sleep it sizes will not happen.
                        ending = self.options.mode == "drain" and not self.ledger.any_held()
                        idle_for = self.fetcher.idle_timeout() if not jobs and not ending else 0.0
            except CONNECTION_ERRORS:
                if self._stop_seen():
                    return
                raise
            if filled:
                continue  # wait for room, at the top of the loop
            if jobs:
                rechecked = False
                continue
            if self.options.mode == "drain" and not self.ledger.any_held():
                if held_during_claim:
                    continue
                # Entrypoints skipped as full may have room now that nothing is held: look
                # once more before calling the queue drained.
                if not rechecked and (self.fetcher.unblock() or skipped_full):
                    rechecked = True
                    continue
                logger.info("drain mode: no job is due and none is held; stopping")
                return
            # Asleep: a wake-up meanwhile may claim on the listener's thread.
            self._fetch_asleep = True
            self.mailbox.wait(min(idle_for, nudge_in))
            self._fetch_asleep = False

    def shutdown(self) -> None:
        """Stop: held jobs finish (until ``shutdown_timeout``), what is left goes back to the
        queue, outcomes are written (see :mod:`.shutdown`)."""
        Shutdown(
            ledger=self.ledger,
            buffer=self.buffer,
            mailbox=self.mailbox,
            options=self.options,
            clock=self.clock,
            hooks=self.hooks,
            release=self.release,
            join=self.runner.join,
            finish=self.flusher.finish,
            fatal=lambda: self.fatal,
        ).run()
