"""The ledger: the jobs one worker holds, by attempt, and the counters of its run.

A job is held from its claim until its outcome is written (or it is released): buffered,
running, or finished and waiting for the flusher. The fetcher holds what it claims, the
runner starts and finishes handlers, the flusher forgets what it wrote; they share this
ledger and nothing else, under its own lock. :meth:`Ledger.snapshot` is how tests and
observers read it.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import itertools
import logging
import operator
import uuid
from collections.abc import Callable, Iterable
from threading import Lock
from typing import NamedTuple

from pgqueue_sync.context import Context
from pgqueue_sync.models import Job, JobId, Outcome, WorkerStats

__all__ = ["Attempt", "Ledger", "LedgerSnapshot", "Running"]

logger = logging.getLogger(__name__)

# A job's attempt: the job id and its attempt number (a worker may hold a newer attempt of
# a job whose older one it still runs, once its heartbeat lapsed and it claimed it again).
Attempt = tuple[JobId, int]


class Running(NamedTuple):
    """A handler running: since when (the worker's clock) and in which thread (a named
    tuple: one is made per job, at a sixth of a frozen dataclass's cost)."""

    started: float
    thread: int


# Running((started, thread)) without the named tuple's Python-level __new__ (one per job).
_running = functools.partial(tuple.__new__, Running)
_ID = operator.attrgetter("id")
_ENTRYPOINT = operator.attrgetter("entrypoint")
_CANCEL_REQUESTED = operator.attrgetter("cancel_requested")


@dataclasses.dataclass(frozen=True)
class LedgerSnapshot:
    """The ledger at one moment: held jobs by id, the attempts waiting in the buffer (in
    order), running attempts, attempts abandoned past their timeout, the run's counters."""

    held: dict[JobId, Job]
    buffered: list[Attempt]
    running: dict[Attempt, Running]
    abandoned: frozenset[Attempt]
    stats: WorkerStats


class Ledger:
    """What one worker holds (see the module docstring)."""

    def __init__(self, worker_id: uuid.UUID) -> None:
        self.worker_id = worker_id
        self._lock = Lock()
        self._held: dict[JobId, Job] = {}
        self._by_entrypoint: collections.Counter[str] = collections.Counter()
        self._contexts: dict[JobId, Context] = {}
        self._running: dict[Attempt, Running] = {}
        # Attempts whose handler ran past its timeout: their threads cannot be killed, so
        # they are abandoned and whatever they return later is dropped.
        self._abandoned: set[Attempt] = set()
        self._stats = WorkerStats()

    # -- reading -------------------------------------------------------------------------

    def snapshot(self, buffered: Callable[[], list[Job]] = list) -> LedgerSnapshot:
        """The ledger now; ``buffered()`` (the buffer's jobs) is read under the same lock,
        so that a job is seen buffered or running, never both."""
        with self._lock:
            return LedgerSnapshot(
                dict(self._held),
                [(job.id, job.attempts) for job in buffered()],
                dict(self._running),
                frozenset(self._abandoned),
                dataclasses.replace(self._stats),
            )

    @property
    def stats(self) -> WorkerStats:
        """A copy of the run's counters."""
        with self._lock:
            return dataclasses.replace(self._stats)

    def count(self, **deltas: int) -> None:
        """Add to the run's counters (``count(claimed=3)``)."""
        with self._lock:
            for name, delta in deltas.items():
                setattr(self._stats, name, getattr(self._stats, name) + delta)

    def held(self) -> dict[JobId, Job]:
        """The jobs held now: buffered, running, or finished but not yet written."""
        with self._lock:
            return dict(self._held)

    def holds(self, job_id: JobId, attempt: int) -> bool:
        """Whether this worker holds that attempt of the job."""
        with self._lock:
            return self._holds(job_id, attempt)

    def any_held(self) -> bool:
        """Whether the worker holds any job."""
        return bool(self._held)

    def held_count(self) -> int:
        """How many jobs the worker holds."""
        return len(self._held)

    def still_held(self, outcomes: Iterable[Outcome]) -> list[Outcome]:
        """The outcomes whose attempt this worker still holds (one released at a shutdown
        deadline, or superseded, is no longer its to write)."""
        with self._lock:
            held = self._held
            return [
                o
                for o in outcomes
                if (job := held.get(o.job_id)) is not None and job.attempts == o.attempt
            ]

    def attempts_of(self, job_ids: Iterable[JobId]) -> list[Attempt]:
        """The attempts held of these jobs (those still held)."""
        with self._lock:
            return [(i, self._held[i].attempts) for i in job_ids if i in self._held]

    def held_of(self, entrypoint: str) -> int:
        with self._lock:
            return self._by_entrypoint[entrypoint]

    def running_jobs(self) -> list[Job]:
        with self._lock:
            return [self._held[i] for i, _ in self._running if i in self._held]

    def unfinished(self) -> bool:
        """Whether a handler that is not past its timeout still runs."""
        with self._lock:
            return any(key not in self._abandoned for key in self._running)

    @property
    def stuck(self) -> int:
        """Handlers still running past their timeout."""
        with self._lock:
            return len(self._abandoned)

    # -- holding -------------------------------------------------------------------------

    def hold(self, jobs: list[Job]) -> list[Job]:
        """Hold what a claim returned; return the jobs to buffer.

        A job already held at the same attempt is not buffered again: the database forgot
        this worker's claim (claims commit asynchronously and the server crashed before
        flushing it) and the worker claimed it again. A job held at an older attempt (this
        worker's heartbeat lapsed and it re-claimed its own job) is superseded: the older
        attempt's context is cancelled and its outcome will be fenced out.
        """
        with self._lock:
            claimed = dict(zip(map(_ID, jobs), jobs, strict=True))
            if (
                len(claimed) == len(jobs)
                and self._held.keys().isdisjoint(claimed)
                and not any(map(_CANCEL_REQUESTED, jobs))
            ):
                # The usual claim: none of its jobs held already, no cancellation asked.
                # C-level steps for the batch rather than a loop of Python steps per job.
                self._held.update(claimed)
                self._by_entrypoint.update(map(_ENTRYPOINT, jobs))
                contexts = map(Context, jobs, itertools.repeat(self.worker_id, len(jobs)))
                self._contexts.update(zip(claimed, contexts, strict=True))
                self._stats.claimed += len(jobs)
                return list(jobs)
            return self._hold_each(jobs)

    def _hold_each(self, jobs: list[Job]) -> list[Job]:
        """``hold``, one job at a time (under the lock): a claim that returned a job this
        worker holds already, or a job whose cancellation was asked."""
        fresh: list[Job] = []
        for job in jobs:
            older = self._held.get(job.id)
            if older is not None and older.attempts == job.attempts:
                logger.warning(
                    "job %d: claimed again as attempt %d, which this worker already holds "
                    "(the server lost the first claim in a crash); it runs once",
                    job.id,
                    job.attempts,
                )
                continue
            if older is not None:
                logger.warning(
                    "job %d: re-claimed as attempt %d while this worker still held attempt "
                    "%d (its heartbeat had lapsed); the older attempt is superseded",
                    job.id,
                    job.attempts,
                    older.attempts,
                )
                self._by_entrypoint[older.entrypoint] -= 1
                stale = self._contexts.get(job.id)
                if stale is not None:
                    stale.cancel()
            self._held[job.id] = job
            self._by_entrypoint[job.entrypoint] += 1
            ctx = Context(job, self.worker_id)
            if job.cancel_requested:
                ctx.cancel()
            self._contexts[job.id] = ctx
            fresh.append(job)
        self._stats.claimed += len(fresh)
        return fresh

    def forget(self, attempts: Iterable[Attempt]) -> bool:
        """Stop holding these attempts (written, or released); True if none is held now."""
        with self._lock:
            held = self._held
            for job_id, attempt in attempts:
                job = held.get(job_id)
                if job is not None and job.attempts == attempt:
                    del held[job_id]
                    self._by_entrypoint[job.entrypoint] -= 1
                    self._contexts.pop(job_id, None)
            return not self._held

    def cancel(self, job_ids: Iterable[JobId]) -> None:
        """Cancel the contexts of these held jobs (running or buffered)."""
        with self._lock:
            contexts = [self._contexts[i] for i in job_ids if i in self._contexts]
        for ctx in contexts:
            if not ctx.is_cancelled:
                logger.info("job %d: cancellation requested", ctx.job.id)
                ctx.cancel()

    # -- running -------------------------------------------------------------------------

    def start(self, job: Job, now: float, thread: int) -> Context | None:
        """Mark the attempt running in ``thread``; its Context, or None if the attempt is no
        longer held (superseded while it waited in the buffer)."""
        key = (job.id, job.attempts)
        with self._lock:
            held = self._held.get(job.id)
            if held is None or held.attempts != job.attempts:
                return None
            self._running[key] = _running((now, thread))
            return self._contexts.get(job.id) or Context(job, self.worker_id)

    def finish(self, job: Job, succeeded: bool) -> bool:
        """The attempt's handler returned: False if it had been abandoned at its timeout
        (what it returned is dropped), else True, counted as succeeded or failed."""
        key = (job.id, job.attempts)
        with self._lock:
            self._running.pop(key, None)
            if key in self._abandoned:
                self._abandoned.discard(key)
                return False
            if succeeded:
                self._stats.succeeded += 1
            else:
                self._stats.failed += 1
            return True

    def expire(
        self, now: float, timeout_of: Callable[[Job], float | None]
    ) -> tuple[list[tuple[Job, Running, Context | None]], float | None]:
        """Abandon the running attempts past their timeout (``timeout_of(job)`` seconds);
        return them, with the seconds until the next running attempt's timeout."""
        expired: list[tuple[Job, Running, Context | None]] = []
        next_in: float | None = None
        with self._lock:
            for key, run in self._running.items():
                job = self._held.get(key[0])
                if job is None or job.attempts != key[1] or key in self._abandoned:
                    continue
                timeout = timeout_of(job)
                if timeout is None:
                    continue
                left = run.started + timeout - now
                if left > 0:
                    next_in = left if next_in is None else min(next_in, left)
                    continue
                self._abandoned.add(key)
                self._stats.timed_out += 1
                expired.append((job, run, self._contexts.get(job.id)))
        return expired, next_in

    def abandon_running(self) -> set[JobId]:
        """Abandon every running attempt not abandoned yet (a shutdown deadline passed);
        their job ids. (An attempt past its timeout already has its outcome queued.)"""
        with self._lock:
            newly = [key for key in self._running if key not in self._abandoned]
            self._abandoned.update(newly)
            return {job_id for job_id, _ in newly}

    def _holds(self, job_id: JobId, attempt: int) -> bool:
        held = self._held.get(job_id)
        return held is not None and held.attempts == attempt
