"""The flusher: writes outcomes and keeps the held jobs' heartbeats fresh, in one thread.

Outcomes are written in batches, fenced by worker id and attempt (an outcome of a job that
another worker re-picked is discarded). A batch the database refuses is split until the
refused rows stand alone; each is recorded as ``exception`` with the database's reason.
The same thread refreshes the heartbeat of every held job (buffered, running, or finished
but unwritten) so ``retry_timer`` re-picks only jobs of dead workers, reads the
cancellations a NOTIFY hinted at, probes the listener, prunes the log, watches handler
timeouts, and does the chores other parts of the worker give it (the workers registry's
row, the paused entrypoints: :mod:`.presence`). It never dies: a write that fails is
retried with a backoff while the heartbeats go on.
"""

from __future__ import annotations

import logging
import operator
import random
import threading
import uuid
from collections.abc import Callable, Sequence
from typing import Protocol

import psycopg

from pgqueue_sync.clock import Clock
from pgqueue_sync.errors import PgQueueError, SchemaNotInstalledError, SchemaVersionError
from pgqueue_sync.models import JobId, JobStatus, Outcome
from pgqueue_sync.options import RunOptions
from pgqueue_sync.retry import CONNECTION_ERRORS
from pgqueue_sync.translate import describe

from .buffer import CompletionBuffer, Mailbox
from .hooks import HookList
from .ledger import Ledger
from .store import Store

__all__ = ["Chore", "Flusher", "backoff", "refused"]

logger = logging.getLogger(__name__)

# An outcome's attempt, (job id, attempt number), as the ledger keys it.
_ATTEMPT = operator.attrgetter("job_id", "attempt")

PRUNE_INTERVAL = 60.0
# Outcomes fewer than GATHER_BELOW wait GATHER_SECONDS for more before they are written.
GATHER_BELOW = 64
GATHER_SECONDS = 0.002

# SQLSTATE classes of errors that say "not now" rather than "never": connection
# exceptions, transaction rollbacks (serialization, deadlock), insufficient resources,
# objects in use or locked, operator intervention, system and internal errors.
_TRANSIENT_SQLSTATE_CLASSES = ("08", "40", "53", "55", "57", "58", "XX")


def refused(exc: BaseException) -> bool:
    """Whether ``exc``, raised while writing outcomes, means the database will never accept
    these rows as they are (bad data, a constraint, a trigger), rather than a lost
    connection, a missing schema or a transient condition worth retrying."""
    if isinstance(exc, (*CONNECTION_ERRORS, SchemaNotInstalledError, SchemaVersionError)):
        return False
    if not isinstance(exc, PgQueueError):
        return True  # a value the driver could not even send
    cause = exc.__cause__
    state = getattr(cause, "sqlstate", None)
    if state:
        return not state.startswith(_TRANSIENT_SQLSTATE_CLASSES)
    # Raised by the driver before the server saw it: a value it cannot send is refused.
    return isinstance(cause, psycopg.DataError)


def backoff(failures: int) -> float:
    """Seconds before the next try after ``failures`` failed ones: 50 ms doubling to 2 s,
    with jitter so that many workers do not retry in step."""
    return float(min(2.0, 0.05 * 2 ** min(failures - 1, 6))) + random.uniform(0, 0.05)


class Chore(Protocol):
    """Work another part of the worker has the flusher's thread do."""

    @property
    def pending(self) -> bool:
        """Something is to be done now: the flusher's turn does not wait."""

    def beat(self) -> None:
        """With each heartbeat."""

    def tick(self) -> None:
        """On each turn of the flusher."""


class Flusher:
    """Outcomes, heartbeats and the rest of the worker's housekeeping (see the module
    docstring): ``flush`` and ``beat`` are steps a test can call; ``start`` runs them in
    the flusher thread."""

    def __init__(
        self,
        *,
        worker_id: uuid.UUID,
        store: Store,
        ledger: Ledger,
        completions: CompletionBuffer,
        mailbox: Mailbox,
        options: RunOptions,
        clock: Clock,
        watch: Callable[[], float | None],
        probe: Callable[[], None] | None,
        fail: Callable[[PgQueueError], None],
        abort: Callable[[], None],
        hooks: HookList,
        chores: Sequence[Chore] = (),
    ) -> None:
        # None without hooks: a falsy check per job without HookList.__bool__'s call.
        self._hooks = hooks if hooks else None
        self._chores = list(chores)
        self.worker_id = worker_id
        self._store = store
        self._ledger = ledger
        self._completions = completions
        self._mailbox = mailbox
        self._options = options
        self._clock = clock
        self._watch = watch
        self._probe = probe
        self._fail = fail
        self._abort = abort
        # Jobs a cancel NOTIFY named: their state is read from the table.
        self._cancel_checks: set[JobId] = set()
        self._cancel_lock = threading.Lock()
        self._hard_stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._next_beat = clock.monotonic() + options.heartbeat_interval
        self._next_prune = clock.monotonic()

    # -- steps ---------------------------------------------------------------------------

    def flush(
        self, outcomes: list[Outcome] | None = None, *, uncertain: bool = False
    ) -> set[JobId]:
        """Write outcomes (by default all pending ones); return the ids recorded. Pending
        outcomes that fail to be written stay pending.

        ``uncertain``: an earlier attempt to write these was cut off with its connection and
        may have committed; outcomes found already written count as recorded.
        """
        if outcomes is not None:
            return self._write(outcomes, uncertain)
        batch = self._completions.take_all(0)
        try:
            return self._write(batch, uncertain)
        except BaseException:
            self._completions.put_back(batch)
            raise

    def beat(self) -> dict[JobId, bool]:
        """Refresh the heartbeat of every held job; pass on cancellation requests.

        Returns the jobs still held in the table, each with its cancel-requested flag.
        """
        ids = set(self._ledger.held())
        if not ids:
            return {}
        alive = self._store.heartbeat(self.worker_id, ids)
        self._ledger.cancel([job_id for job_id, requested in alive.items() if requested])
        held = self._ledger.held()
        for job_id in sorted(i for i in ids - alive.keys() if i in held):
            logger.warning(
                "job %d is no longer held by this worker (re-picked after retry_timer); its "
                "outcome here will be discarded",
                job_id,
            )
        return alive

    def check_cancellations(self, job_ids: list[JobId]) -> None:
        """A cancel NOTIFY named these jobs: have their state read from the table (a NOTIFY
        proves nothing: any role can send one)."""
        held = self._ledger.held()
        wanted = [i for i in job_ids if i in held]
        if wanted:
            with self._cancel_lock:
                self._cancel_checks.update(wanted)
            self._completions.poke()

    def read_cancellations(self) -> None:
        """Cancel the jobs a NOTIFY named whose ``cancel_requested`` the table confirms."""
        with self._cancel_lock:
            ids, self._cancel_checks = self._cancel_checks, set()
        if not ids:
            return
        try:
            alive = self._store.heartbeat(self.worker_id, ids)
        except BaseException:
            with self._cancel_lock:
                self._cancel_checks |= ids
            raise
        self._ledger.cancel([job_id for job_id, requested in alive.items() if requested])

    def prune(self) -> int:
        """Delete log rows older than ``log_retention`` (if set)."""
        if self._options.log_retention is None:
            return 0
        return self._store.prune_log(self._options.log_retention)

    def _write(self, outcomes: list[Outcome], uncertain: bool = False) -> set[JobId]:
        # A job released at the shutdown deadline is no longer this worker's to finish.
        batch = self._ledger.still_held(outcomes)
        if not batch:
            return set()
        recorded = self._complete(batch)
        missing = (
            [] if len(recorded) == len(batch) else [o for o in batch if o.job_id not in recorded]
        )
        if uncertain and missing:
            # The first try may have committed before its connection died.
            recorded |= self._store.recorded(self.worker_id, missing)
            # A retry leaves no log row; either way the job is no longer this worker's.
            recorded |= {o.job_id for o in missing if o.status is JobStatus.QUEUED}
        fenced = (
            []
            if len(recorded) == len(batch)
            else [o.job_id for o in batch if o.job_id not in recorded]
        )
        for job_id in fenced:
            logger.warning(
                "job %d: outcome discarded, the job was re-picked by another worker after "
                "this worker's heartbeat lapsed (retry_timer); its result there stands",
                job_id,
            )
        idle = self._ledger.forget(map(_ATTEMPT, batch))
        self._ledger.count(recorded=len(recorded), fenced=len(fenced))
        if self._hooks:
            self._hooks.outcomes_written(sorted(recorded), fenced)
            self._hooks.jobs_forgotten()
        if idle:
            self._mailbox.post(Mailbox.IDLE)
        return recorded

    def _complete(self, batch: list[Outcome]) -> set[JobId]:
        """Write ``batch``; if the database refuses it, split it until the refused rows
        stand alone, and record each of those as ``exception`` with the database's reason.
        Connection losses and transient errors propagate (the whole batch is retried)."""
        try:
            return self._store.complete(self.worker_id, batch).recorded
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
            return self._store.complete(self.worker_id, [replacement]).recorded
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

    # -- the thread ----------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._serve, name="pgqueue-sync-flusher", daemon=True
        )
        self._thread.start()

    def finish(self, timeout: float) -> None:
        """Let the thread write what is pending and end, for at most ``timeout`` seconds;
        past that, stop it hard: a write blocked on the server is cut, and what is left
        unwritten is reported (its jobs run again after ``retry_timer``)."""
        self._completions.close()
        if self._thread is None:
            return
        self._thread.join(timeout)
        if self._thread.is_alive():
            self.stop_hard()
            self._thread.join(0.3)

    def stop_hard(self) -> None:
        self._hard_stop.set()
        self._abort()

    @property
    def stopped_hard(self) -> bool:
        return self._hard_stop.is_set()

    def _serve(self) -> None:
        pending: list[Outcome] = []
        uncertain = False
        failures = 0
        retry_at = 0.0
        while True:
            if self._hard_stop.is_set():
                self._give_up(pending + self._completions.take_all(0))
                return
            try:
                timeout_in = self._watch()
            except Exception as exc:
                self._error("checking handler timeouts", exc)
                timeout_in = None
            now = self._clock.monotonic()
            wake_at = min(retry_at, self._next_beat) if pending else self._next_beat
            wait = max(0.0, wake_at - now)
            if timeout_in is not None:
                wait = min(wait, timeout_in)
            if self._cancel_checks or any(chore.pending for chore in self._chores):
                wait = 0.0
            pending += self._completions.take_all(wait)
            if (
                0 < len(pending) < GATHER_BELOW
                and not self._completions.closed
                and not failures
                and self._ledger.held_count() > len(pending)
            ):
                # Group commit: a few outcomes wait a moment for more, so one statement and
                # one commit serve more jobs and the server has more CPU left for claims.
                # Not when no other held job could finish meanwhile (a drain's last jobs).
                self._hard_stop.wait(GATHER_SECONDS)
                pending += self._completions.take_all(0)
            if pending and self._clock.monotonic() >= retry_at:
                try:
                    self.flush(pending, uncertain=uncertain)
                    pending, uncertain, failures = [], False, 0
                except Exception as exc:
                    uncertain = uncertain or isinstance(exc, CONNECTION_ERRORS)
                    failures += 1
                    delay = backoff(failures)
                    retry_at = self._clock.monotonic() + delay
                    self._error(
                        f"writing {len(pending)} outcome(s) (retrying in {delay:.2f} s)", exc
                    )
            try:
                self.read_cancellations()
                self._periodic()
            except Exception as exc:
                self._error("refreshing heartbeats", exc)
            if self._completions.closed and not pending and not len(self._completions):
                return

    def _periodic(self) -> None:
        now = self._clock.monotonic()
        if now >= self._next_beat:
            self.beat()
            if self._probe is not None:
                self._probe()
            self._next_beat = self._clock.monotonic() + self._options.heartbeat_interval
            for chore in self._chores:
                chore.beat()
        if self._options.log_retention is not None and now >= self._next_prune:
            pruned = self.prune()
            if pruned:
                logger.info(
                    "pruned %d log row(s) older than %s", pruned, self._options.log_retention
                )
            self._next_prune = self._clock.monotonic() + PRUNE_INTERVAL
        for chore in self._chores:
            chore.tick()

    def _error(self, doing: str, exc: Exception) -> None:
        if isinstance(exc, (SchemaNotInstalledError, SchemaVersionError)):
            self._fail(exc)
            return
        if isinstance(exc, CONNECTION_ERRORS):
            logger.warning("%s: %s", doing, exc)
        else:
            logger.error("%s: %s", doing, exc, exc_info=not isinstance(exc, PgQueueError))

    def _give_up(self, outcomes: list[Outcome]) -> None:
        """The run is over and these outcomes could not be written: say so, loudly."""
        ids = sorted({o.job_id for o in outcomes if self._ledger.holds(o.job_id, o.attempt)})
        if ids:
            shown = ", ".join(map(str, ids[:20])) + (" ..." if len(ids) > 20 else "")
            logger.error(
                "stopping with %d outcome(s) unwritten (jobs %s): the jobs stay picked and "
                "run again after retry_timer (%s)",
                len(ids),
                shown,
                self._options.retry_timer,
            )
