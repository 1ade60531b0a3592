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
from typing import Any

from .buffer import BufferClosed, CompletionBuffer, JobBuffer, Mailbox
from .clock import Clock
from .db import Driver, ManagedConnection
from .errors import ConfigurationError, JobTimeoutError, PgQueueError
from .execution import Entrypoint, execute, failure
from .listener import Listener
from .models import Context, Job, JobId, JobStatus
from .options import RunOptions
from .queries import Outcome, Queries
from .retry import CONNECTION_ERRORS, reconnecting
from .settings import Settings
from .sql import statements

__all__ = ["FETCH_SESSION", "Worker", "WorkerStats"]

logger = logging.getLogger("pgqueue_sync")

PRUNE_INTERVAL = 60.0

# Outcomes fewer than GATHER_BELOW wait GATHER_SECONDS for more before they are written.
GATHER_BELOW = 64
GATHER_SECONDS = 0.002

# The fetch connection's session. Claims commit without waiting for their WAL flush: a
# claim lost in a server crash only puts its jobs back in the queue (at-least-once holds),
# and the next outcome written, committed synchronously, flushes the WAL past it anyway.
# The claim, prepared after a few runs, keeps one generic plan (the partial index walked
# in order): planning it anew for every claim cost more than running it, and the planner's
# probes of the index ends grow with the backlog.
FETCH_SESSION: tuple[bytes, ...] = (
    b"SET synchronous_commit = off",
    b"SET plan_cache_mode = force_generic_plan",
)


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
        self.unlimited = [name for name in self.entrypoints if not registry[name].limited]
        self.limited = [registry[name] for name in self.entrypoints if registry[name].limited]
        self.shutdown_event = shutdown
        self.mailbox = mailbox
        self.settings = settings
        # application_name: pgqueue-sync:<role>:<worker id prefix>, to find them in
        # pg_stat_activity next to this worker's logs.
        tag = self.id.hex[:8]
        self._fetch_conn = ManagedConnection(driver, f"fetch:{tag}", setup=FETCH_SESSION)
        self._complete_conn = ManagedConnection(driver, f"complete:{tag}")
        self._listen_conn = ManagedConnection(driver, f"listen:{tag}")
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
        self._held_by_entrypoint: collections.Counter[str] = collections.Counter()
        self._contexts: dict[JobId, Context] = {}
        # Keyed by (job id, attempt): after its heartbeat lapsed, a worker can re-claim a job
        # whose older attempt it still runs.
        self._running: dict[tuple[JobId, int], _Running] = {}
        # (job id, attempt) of handlers that ran past their timeout: their threads cannot be
        # killed, so they are abandoned and whatever they return later is dropped.
        self._abandoned: set[tuple[JobId, int]] = set()
        # Idents of handler threads that were abandoned and replaced: if their handler ever
        # returns, the thread ends instead of taking another job.
        self._retired: set[int] = set()
        self._thread_names = itertools.count()
        # Limited entrypoints whose last claim was held back: until when (monotonic) they are
        # not tried again, and whether a finished job may free them ("slots") or only time
        # ("rate"). Claims skip them, so a blocked entrypoint costs no query.
        self._blocked: dict[str, tuple[float, str]] = {}
        self._threads: list[threading.Thread] = []
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
        with self._lock:
            for job in jobs:
                older = self._held.get(job.id)
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
            self.stats.claimed += len(jobs)
        self.buffer.put_many(jobs)

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
        recorded = self.complete_queries.complete(self.id, batch).recorded
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

    def cancel(self, job_ids: list[JobId]) -> None:
        """Tell the handlers of these jobs (running or buffered) that they are cancelled."""
        with self._lock:
            contexts = [self._contexts[i] for i in job_ids if i in self._contexts]
        for ctx in contexts:
            if not ctx.cancelled.is_set():
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
                    if self._threads and len(self._retired) < self.options.workers:
                        self._retired.add(run.thread)
                        replace += 1
                else:
                    next_in = left if next_in is None else min(next_in, left)
            contexts = [self._contexts.get(job.id) for job, _, _ in expired]
        if not expired:
            return next_in
        frames = sys._current_frames()  # where each stuck handler is now
        self._add_threads(replace)
        if replace < len(expired):
            logger.error(
                "%d handler thread(s) stuck past their timeout and not replaced (at most %d "
                "are): this worker now runs with fewer threads",
                len(expired) - replace,
                self.options.workers,
            )
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
