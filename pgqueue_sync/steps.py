"""The steps of a worker, each a method a test can call one at a time, without threads.

``WorkerSteps`` holds a worker's state (the jobs it holds, by attempt; its running
handlers; the limited entrypoints it skips; its connections) and the steps that move it:
``fetch_once`` claims jobs into the bounded :class:`JobBuffer`, ``run_job`` runs one
handler and queues its outcome, ``flush`` writes outcomes fenced by worker id and attempt,
``beat`` refreshes the heartbeat of every held job, ``cancel``, ``check_timeouts``,
``release`` and ``prune``. :class:`pgqueue_sync.worker.Worker` adds the threads and the
run loop that call them.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import json
import logging
import sys
import threading
import traceback
import uuid
from collections.abc import Iterable, Mapping

import psycopg

from .buffer import CompletionBuffer, JobBuffer, Mailbox
from .clock import Clock
from .db import Driver, ManagedConnection, can_listen, transaction_pooling
from .errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    JobTimeoutError,
    PgQueueError,
    SchemaNotInstalledError,
    SchemaVersionError,
)
from .execution import Entrypoint, execute, failure
from .models import Context, Job, JobId, JobStatus
from .options import RunOptions
from .queries import Outcome, Queries
from .rescue import before_rescued
from .schedules import Scheduler
from .settings import Settings

__all__ = ["FETCH_SESSION", "WorkerStats", "WorkerSteps"]

logger = logging.getLogger("pgqueue_sync")

# The fetch connection's session. Claims commit without waiting for their WAL flush: a
# claim lost in a server crash only puts its jobs back in the queue (at-least-once holds),
# and the next outcome written, committed synchronously, flushes the WAL past it anyway.
# The claim, prepared after a few runs, keeps one generic plan (the partial index walked
# in order): planning it anew for every claim cost more than running it, and the planner's
# probes of the index ends grow with the backlog.
# Through a transaction pooler (PgBouncer) a session SET would stay on a shared server
# connection, for other clients: none is sent there. Each claim then turns synchronous_commit
# off for its own transaction instead, and plan_cache_mode does not matter: nothing is
# prepared.
FETCH_SESSION: tuple[bytes, ...] = (
    b"SET synchronous_commit = off",
    b"SET plan_cache_mode = force_generic_plan",
)


# SQLSTATE classes of errors that say "not now" rather than "never": connection
# exceptions, transaction rollbacks (serialization, deadlock), insufficient resources,
# objects in use or locked, operator intervention, system and internal errors.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "55", "57", "58", "XX")


def refused(exc: BaseException) -> bool:
    """Whether ``exc``, raised while writing outcomes, means the database will never accept
    these rows as they are (bad data, a constraint, a trigger), rather than a lost
    connection, a missing schema or a transient condition worth retrying."""
    if isinstance(exc, (ConnectionLostError, ConnectError, SchemaNotInstalledError)):
        return False
    if isinstance(exc, SchemaVersionError):
        return False
    if not isinstance(exc, PgQueueError):
        return True  # a value the driver could not even send
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None)
    if state:
        return not state.startswith(_TRANSIENT_SQLSTATE_CLASSES)
    # Raised by the driver before the server saw it: a value it cannot send is refused.
    return isinstance(cause, psycopg.DataError)


def describe(exc: BaseException) -> str:
    """The first line of an error's message."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


@dataclasses.dataclass
class WorkerStats:
    claimed: int = 0
    succeeded: int = 0
    failed: int = 0
    recorded: int = 0
    fenced: int = 0
    released: int = 0
    timed_out: int = 0


@dataclasses.dataclass
class _Running:
    started: float
    thread: int


class WorkerSteps:
    """A worker's state and steps (see the module docstring); no threads of its own."""

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
        self.unlimited = [name for name in self.entrypoints if not registry[name].limited]
        self.limited = [registry[name] for name in self.entrypoints if registry[name].limited]
        self.shutdown_event = shutdown
        self.mailbox = mailbox
        self.settings = settings
        # application_name: pgqueue-sync:<role>:<worker id prefix>, to find them in
        # pg_stat_activity next to this worker's logs.
        tag = self.id.hex[:8]
        session = () if transaction_pooling(driver) else FETCH_SESSION
        self._fetch_conn = ManagedConnection(driver, f"fetch:{tag}", setup=session)
        self._complete_conn = ManagedConnection(driver, f"complete:{tag}")
        self._listen_conn = ManagedConnection(driver, f"listen:{tag}", listen=True)
        # False through a transaction pooler without listen_dsn: the worker polls.
        self.listening = can_listen(driver)
        self.fetch_queries = Queries(self._fetch_conn, settings, clock=clock)
        # Without the session's synchronous_commit = off, each claim turns it off itself.
        self.fetch_queries.async_commit_claims = not session
        self.complete_queries = Queries(self._complete_conn, settings, clock=clock)
        self.scheduler = Scheduler(self._fetch_conn, settings, clock, registry)
        self.buffer = JobBuffer(
            options.buffer_size,
            watermark=options.claim_size,
            on_room=lambda: mailbox.post(Mailbox.ROOM),
        )
        self.completions = CompletionBuffer()
        self.stats = WorkerStats()
        self._lock = threading.Lock()
        self._held: dict[JobId, Job] = {}
        self._held_by_entrypoint: collections.Counter[str] = collections.Counter()
        self._contexts: dict[JobId, Context] = {}
        # Keyed by (job id, attempt): after its heartbeat lapsed, a worker can re-claim a job
        # whose older attempt it still runs.
        self._running: dict[tuple[JobId, int], _Running] = {}
        # (job id, attempt) of handlers that ran past their timeout: their threads cannot be
        # killed, so they are abandoned and whatever they return later is dropped.
        self._abandoned: set[tuple[JobId, int]] = set()
        # The job counted as lost (suspected of killing its workers) that runs alone here.
        self._suspect: tuple[JobId, int] | None = None
        # Idents of handler threads that were abandoned and replaced: if their handler ever
        # returns, the thread ends instead of taking another job.
        self._retired: set[int] = set()
        self._thread_names = itertools.count()
        # Limited entrypoints whose last claim was held back: until when (monotonic) they are
        # not tried again, and whether a finished job may free them ("slots") or only time
        # ("rate"). Claims skip them, so a blocked entrypoint costs no query.
        self._blocked: dict[str, tuple[float, str]] = {}
        self._threads: list[threading.Thread] = []
        # Handler threads that can take a job (started, not retired).
        self._live = 0
        # Jobs a cancel NOTIFY named: the flusher reads their state from the table.
        self._cancel_checks: set[JobId] = set()
        # The error that ended this run early (the queue's tables are gone, or changed).
        self.fatal: PgQueueError | None = None
        self._flusher: threading.Thread | None = None
        self._hard_stop = threading.Event()
        self._next_beat = clock.monotonic() + options.heartbeat_interval
        self._probe = json.dumps({"type": "probe", "worker": str(self.id)})
        self._next_prune = clock.monotonic()

    # -- observation ---------------------------------------------------------------------

    def held(self) -> dict[JobId, Job]:
        """Jobs this worker holds: buffered, running, or finished but not yet written."""
        with self._lock:
            return dict(self._held)

    def running(self) -> list[Job]:
        with self._lock:
            return [self._held[i] for i, _ in self._running if i in self._held]

    def unfinished(self) -> bool:
        """Whether a held job is still buffered or running (a handler past its timeout
        excepted): what a shutdown waits for."""
        with self._lock:
            return any(key not in self._abandoned for key in self._running) or bool(
                self.buffer.qsize()
            )

    def can_start(self) -> bool:
        """Whether a handler thread is free to take jobs (always, before threads exist)."""
        return self._live > 0 or not self._threads

    def fail(self, error: PgQueueError) -> None:
        """End the run with ``error`` (the first one wins): stop fetching now."""
        if self.fatal is None:
            logger.error("stopping the worker: %s", error)
            self.fatal = error
        self.shutdown_event.set()
        self.mailbox.post(Mailbox.STOP)

    @property
    def stuck_threads(self) -> int:
        """Handler threads still running a job that was failed for exceeding its timeout."""
        with self._lock:
            return len(self._abandoned)

    # -- steps ---------------------------------------------------------------------------

    def fetch_once(self, limit: int | None = None) -> list[Job]:
        """Claim as many jobs as fit (at most ``claim_size``) into the buffer.

        Limited entrypoints are claimed first (their limits bound them), each on its own;
        then the others, together, with the room left.
        """
        want = min(self.options.claim_size if limit is None else limit, self.buffer.room())
        if not self.can_start():
            return []  # every handler thread is stuck: what is claimed could not start
        jobs: list[Job] = []
        now = self.clock.monotonic()
        for entry in self.limited:
            if want - len(jobs) <= 0:
                break
            blocked = self._blocked.get(entry.name)
            if blocked is None or blocked[0] <= now:
                jobs += self._claim_limited(entry, want - len(jobs), now)
        if want - len(jobs) > 0 and self.unlimited:
            jobs += self.fetch_queries.dequeue(
                want - len(jobs), self.unlimited, self.id, self.options.retry_timer
            )
        self._hold(jobs)
        return jobs

    def _claim_limited(self, entry: Entrypoint, room: int, now: float) -> list[Job]:
        self._blocked.pop(entry.name, None)
        with self._lock:
            held = self._held_by_entrypoint[entry.name]
        want = room
        if entry.per_worker_limit is not None:
            want = min(want, entry.per_worker_limit - held)
        if want <= 0:
            self._block(entry.name, now, self.options.dequeue_timeout, "slots")
            return []
        if not entry.globally_limited:
            return self.fetch_queries.dequeue(want, [entry.name], self.id, self.options.retry_timer)
        claim = self.fetch_queries.dequeue_limited(
            entry.name,
            want,
            self.id,
            self.options.retry_timer,
            concurrency_limit=entry.concurrency_limit,
            requests_per_second=entry.requests_per_second,
        )
        if claim.rate_wait is not None:
            self._block(entry.name, now, claim.rate_wait, "rate")
        elif claim.at_limit:
            self._block(entry.name, now, self.options.dequeue_timeout, "slots")
        return claim.jobs

    def _block(self, name: str, now: float, seconds: float, kind: str) -> None:
        self._blocked[name] = (now + seconds, kind)

    def _unblock(self, names: Iterable[str] | None = None) -> bool:
        """Let blocked entrypoints be claimed again now a slot may be free (all of them
        with None); True if any was blocked."""
        blocked = dict(self._blocked)  # read and written from several threads: no iteration
        freed = [
            name
            for name, (_, kind) in blocked.items()
            if kind == "slots" and (names is None or name in names)
        ]
        for name in freed:
            self._blocked.pop(name, None)
        return bool(freed)

    def _hold(self, jobs: list[Job]) -> None:
        if not jobs:
            return
        fresh: list[Job] = []
        with self._lock:
            for job in jobs:
                older = self._held.get(job.id)
                if older is not None and older.attempts == job.attempts:
                    # The database forgot this worker's claim (it commits asynchronously and
                    # the server crashed before flushing it) and this worker claimed the job
                    # again: the same attempt, already buffered or running here. It runs once.
                    logger.warning(
                        "job %d: claimed again as attempt %d, which this worker already holds "
                        "(the server lost the first claim in a crash); it runs once",
                        job.id,
                        job.attempts,
                    )
                    continue
                if older is not None:
                    # This worker's heartbeat lapsed and it re-claimed its own job: the older
                    # attempt is superseded (its outcome would be fenced out anyway).
                    logger.warning(
                        "job %d: re-claimed as attempt %d while this worker still held attempt "
                        "%d (its heartbeat had lapsed); the older attempt is superseded",
                        job.id,
                        job.attempts,
                        older.attempts,
                    )
                    self._held_by_entrypoint[older.entrypoint] -= 1
                    stale = self._contexts.get(job.id)
                    if stale is not None:
                        stale.cancel()
                self._held[job.id] = job
                self._held_by_entrypoint[job.entrypoint] += 1
                ctx = Context(job=job, worker_id=self.id)
                if job.cancel_requested:
                    ctx.cancel()
                self._contexts[job.id] = ctx
                fresh.append(job)
            self.stats.claimed += len(fresh)
        self.buffer.put_many(fresh)

    def _holds(self, job_id: JobId, attempt: int) -> bool:
        """Whether this worker holds that attempt of the job (call with the lock held)."""
        held = self._held.get(job_id)
        return held is not None and held.attempts == attempt

    def _forget(self, attempts: list[tuple[JobId, int]]) -> bool:
        """Stop holding these attempts; return True if the worker now holds none."""
        with self._lock:
            for job_id, attempt in attempts:
                if self._holds(job_id, attempt):
                    job = self._held.pop(job_id)
                    self._held_by_entrypoint[job.entrypoint] -= 1
                    self._contexts.pop(job_id, None)
            return not self._held

    def run_job(self, job: Job) -> Outcome:
        """Run the handler of one job and queue its outcome for writing."""
        if job.rescued and (instead := before_rescued(self, job)) is not None:
            return instead
        key = (job.id, job.attempts)
        with self._lock:
            if not self._holds(*key):
                # Superseded by a newer attempt of the same job while it waited in the buffer.
                return Outcome(job.id, job.attempts, JobStatus.CANCELED, 0.0)
            ctx = self._contexts.get(job.id) or Context(job=job, worker_id=self.id)
            self._running[key] = _Running(self.clock.monotonic(), threading.get_ident())
        entry = self.registry.get(job.entrypoint)
        if entry is not None and entry.timeout is not None:
            self.completions.poke()  # the flusher watches timeouts: a new one starts now
        try:
            outcome = execute(
                entry,
                job,
                ctx,
                self.clock,
                max_result_bytes=self.settings.max_payload_bytes,
            )
        finally:
            with self._lock:
                self._running.pop(key, None)
        with self._lock:
            if key in self._abandoned:
                self._abandoned.discard(key)
                logger.warning(
                    "job %d: its handler returned %.1f s after its timeout; the outcome it "
                    "reports (%s) is dropped",
                    job.id,
                    outcome.duration,
                    outcome.status,
                )
                return outcome
            if outcome.status is JobStatus.SUCCESSFUL:
                self.stats.succeeded += 1
            else:
                self.stats.failed += 1
        self.completions.add(outcome)
        if job.entrypoint in self._blocked and self._unblock([job.entrypoint]):
            self.mailbox.post(Mailbox.WAKE)
        return outcome

    def flush(
        self, outcomes: list[Outcome] | None = None, *, uncertain: bool = False
    ) -> set[JobId]:
        """Write outcomes (by default all pending ones) in one statement; return the ids
        recorded. Pending outcomes that fail to be written stay pending.

        ``uncertain``: an earlier attempt to write these was cut off with its connection and
        may have committed; outcomes found already written count as recorded.
        """
        if outcomes is not None:
            return self._write(outcomes, uncertain)
        batch = self.completions.take_all(0)
        try:
            return self._write(batch, uncertain)
        except BaseException:
            self.completions.put_back(batch)
            raise

    def _write(self, outcomes: list[Outcome], uncertain: bool = False) -> set[JobId]:
        with self._lock:
            # A job released at the shutdown deadline is no longer ours to finish.
            batch = [o for o in outcomes if self._holds(o.job_id, o.attempt)]
        if not batch:
            return set()
        recorded = self._complete(batch)
        missing = [o for o in batch if o.job_id not in recorded]
        if uncertain and missing:
            # The first try may have committed before its connection died.
            recorded |= self.complete_queries.recorded(self.id, missing)
            # A retry leaves no log row; either way the job is no longer this worker's.
            recorded |= {o.job_id for o in missing if o.status is JobStatus.QUEUED}
        fenced = [o.job_id for o in batch if o.job_id not in recorded]
        for job_id in fenced:
            logger.warning(
                "job %d: outcome discarded, the job was re-picked by another worker after "
                "this worker's heartbeat lapsed (retry_timer); its result there stands",
                job_id,
            )
        idle = self._forget([(o.job_id, o.attempt) for o in batch])
        with self._lock:
            self.stats.recorded += len(recorded)
            self.stats.fenced += len(fenced)
        if idle:
            self.mailbox.post(Mailbox.IDLE)
        return recorded

    def _complete(self, batch: list[Outcome]) -> set[JobId]:
        """Write ``batch``; if the database refuses it, split it until the refused rows
        stand alone, and record each of those as ``exception`` with the database's reason.
        Connection losses and transient errors propagate (the whole batch is retried)."""
        try:
            return self.complete_queries.complete(self.id, batch).recorded
        except Exception as exc:
            if not refused(exc):
                raise
            if len(batch) > 1:
                half = len(batch) // 2
                return self._complete(batch[:half]) | self._complete(batch[half:])
            [outcome] = batch
            reason = describe(exc)
        logger.error(
            "job %d: the database refused its outcome (%s): %s; recording it as an exception",
            outcome.job_id,
            outcome.status,
            reason,
        )
        replacement = Outcome(
            outcome.job_id,
            outcome.attempt,
            JobStatus.EXCEPTION,
            outcome.duration,
            traceback=f"OutcomeRefusedError: the database refused this job's outcome "
            f"({outcome.status}): {reason}\n",
        )
        try:
            return self.complete_queries.complete(self.id, [replacement]).recorded
        except Exception as exc:
            if not refused(exc):
                raise
            logger.critical(
                "job %d: the database refused even an exception record (%s); the job stays "
                "picked and runs again after retry_timer",
                outcome.job_id,
                describe(exc),
            )
            return {outcome.job_id}

    def beat(self) -> dict[JobId, bool]:
        """Refresh the heartbeat of every held job; pass on cancellation requests.

        Returns the jobs still held in the table, each with its cancel-requested flag.
        """
        ids = set(self.held())
        if not ids:
            return {}
        alive = self.complete_queries.heartbeat(self.id, ids)
        self.cancel([job_id for job_id, requested in alive.items() if requested])
        with self._lock:
            lost = [i for i in ids - alive.keys() if i in self._held]
        for job_id in lost:
            logger.warning(
                "job %d is no longer held by this worker (re-picked after retry_timer); its "
                "outcome here will be discarded",
                job_id,
            )
        return alive

    def check_cancellations(self, job_ids: list[JobId]) -> None:
        """A cancel NOTIFY named these jobs: have the flusher read their state from the
        table (a NOTIFY proves nothing: any role can send one)."""
        with self._lock:
            held = [i for i in job_ids if i in self._held]
            self._cancel_checks.update(held)
        if held:
            self.completions.poke()

    def _check_cancellations(self) -> None:
        if not self._cancel_checks:
            return
        with self._lock:
            ids, self._cancel_checks = self._cancel_checks, set()
        try:
            alive = self.complete_queries.heartbeat(self.id, ids)
        except BaseException:
            with self._lock:
                self._cancel_checks |= ids
            raise
        self.cancel([job_id for job_id, requested in alive.items() if requested])

    def cancel(self, job_ids: list[JobId]) -> None:
        """Tell the handlers of these jobs (running or buffered) that they are cancelled."""
        with self._lock:
            contexts = [self._contexts[i] for i in job_ids if i in self._contexts]
        for ctx in contexts:
            if not ctx.is_cancelled:
                logger.info("job %d: cancellation requested", ctx.job.id)
                ctx.cancel()

    def check_timeouts(self) -> float | None:
        """Fail the jobs whose handler has run past its entrypoint's ``timeout``.

        Their threads cannot be killed: they are abandoned (``stuck_threads``), their
        context is cancelled, and the job is failed (or retried) with a JobTimeoutError.
        Returns the seconds until the next running job's timeout, if any.
        """
        now = self.clock.monotonic()
        expired: list[tuple[Job, Entrypoint, _Running]] = []
        next_in: float | None = None
        replace = 0
        with self._lock:
            for key, run in self._running.items():
                job = self._held.get(key[0])
                if job is None or job.attempts != key[1] or key in self._abandoned:
                    continue
                entry = self.registry.get(job.entrypoint)
                if entry is None or entry.timeout is None:
                    continue
                left = run.started + entry.timeout - now
                if left <= 0:
                    expired.append((job, entry, run))
                    self._abandoned.add(key)
                    self.stats.timed_out += 1
                    if self._threads and run.thread not in self._retired:
                        # The thread ends if its handler ever returns. At most `workers`
                        # stuck threads are replaced: a handler that always hangs must not
                        # make the worker start threads without end.
                        self._retired.add(run.thread)
                        self._live -= 1
                        if len(self._retired) <= self.options.workers:
                            replace += 1
                else:
                    next_in = left if next_in is None else min(next_in, left)
            contexts = [self._contexts.get(job.id) for job, _, _ in expired]
        if not expired:
            return next_in
        frames = sys._current_frames()  # where each stuck handler is now
        self._add_threads(replace)
        if self._threads and replace < len(expired):
            logger.error(
                "%d handler thread(s) stuck past their timeout and not replaced (at most %d "
                "are): this worker now runs with %d thread(s)",
                len(expired) - replace,
                self.options.workers,
                self._live,
            )
        if not self.can_start():
            self._release_unstartable()
        for (job, entry, run), ctx in zip(expired, contexts, strict=True):
            if ctx is not None:
                ctx.cancel()
            error = JobTimeoutError(
                f"job {job.id} ran longer than its timeout of {entry.timeout:g} s; its "
                "handler thread was abandoned (threads cannot be killed)"
            )
            frame = frames.get(run.thread)
            stack = "".join(traceback.format_stack(frame)) if frame is not None else ""
            text = f"Handler stack at the timeout:\n{stack}JobTimeoutError: {error}\n"
            self.completions.add(failure(entry, job, error, text, now - run.started, self.clock))
        return next_in

    def _release_unstartable(self) -> None:
        """Every handler thread is stuck: buffered jobs could not start here, so they go
        back to the queue at once for other workers (no attempt used)."""
        unstarted = {job.id for job in self.buffer.drain()}
        if unstarted:
            logger.error(
                "every handler thread is stuck past its timeout: %d buffered job(s) go back "
                "to the queue; nothing is claimed until a handler returns",
                len(unstarted),
            )
            self.release(unstarted, unstarted)

    def release(self, job_ids: set[JobId], unstarted: set[JobId]) -> set[JobId]:
        """Give held jobs back to the queue at once; forget them."""
        if not job_ids:
            return set()
        with self._lock:
            attempts = [(i, self._held[i].attempts) for i in job_ids if i in self._held]
        released = self.complete_queries.release(self.id, job_ids, unstarted)
        self._forget(attempts)
        with self._lock:
            self.stats.released += len(released)
        logger.info("released %d job(s) back to the queue", len(released))
        return released

    def prune(self) -> int:
        """Delete log rows older than ``log_retention`` (if set)."""
        if self.options.log_retention is None:
            return 0
        return self.complete_queries.prune_log(self.options.log_retention)

    def _add_threads(self, count: int) -> None:
        """Start ``count`` handler threads: only a running worker has any."""
