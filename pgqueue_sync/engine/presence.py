"""A worker's presence: its row in the workers registry, and the entrypoints it must not run.

:class:`Presence` is the engine's part of two operator features:

- The **workers registry**: a row per running worker (host, pid, entrypoints, threads busy
  and total, jobs done, version, settings), written when it starts, refreshed with each
  heartbeat, removed when it stops cleanly. A row whose heartbeat is older than the
  worker's ``retry_timer`` is a lost worker (``pgq-sync workers`` says so); it is forgotten
  an hour later.
- **Paused entrypoints**: the claim itself skips them (the table is the truth, see the
  ``dequeue`` statement in ``sql/engine.sql``). A ``pause`` NOTIFY is only a hint: on it
  the worker reads the paused set from the table and gives back the buffered, unstarted
  jobs of paused entrypoints (no attempt used); a job of a paused entrypoint that reaches a
  handler thread is given back instead of run. A forged NOTIFY costs one read and changes
  nothing.

The worker calls it in a few places only (see :mod:`.worker`): ``start`` when its threads
are up, ``hint`` on a pause or resume event and when the listener (re)connects, ``stop`` at
a clean stop. The flusher calls ``tick`` on each of its turns and ``beat`` with each
heartbeat (it is one of the flusher's chores); the runner calls ``hold_back`` before it
runs a job of an entrypoint in ``paused``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import uuid
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any

from pgqueue_sync._version import __version__
from pgqueue_sync.admin_models import jsonable
from pgqueue_sync.clock import Clock
from pgqueue_sync.errors import PgQueueError
from pgqueue_sync.models import Job, JobId, JobStatus, Outcome
from pgqueue_sync.options import RunOptions

from .buffer import JobBuffer
from .ledger import Ledger
from .store import Store

__all__ = ["FORGET_LOST_AFTER", "HINT_RETRY", "Presence"]

logger = logging.getLogger(__name__)

# Rows of lost workers are kept this long (to be seen), then deleted by any live worker.
FORGET_LOST_AFTER = timedelta(hours=1)
# After a failed read of the paused set, the next try waits this long (seconds).
HINT_RETRY = 1.0


class Presence:
    """One worker's row in the registry, and the paused entrypoints it knows of (see the
    module docstring)."""

    def __init__(
        self,
        *,
        worker_id: uuid.UUID,
        entrypoints: Sequence[str],
        store: Store,
        ledger: Ledger,
        buffer: JobBuffer,
        release: Callable[[set[JobId], set[JobId]], set[JobId]],
        wake: Callable[[], None],
        options: RunOptions,
        clock: Clock,
    ) -> None:
        self.worker_id = worker_id
        self.entrypoints = list(entrypoints)
        self._store = store
        self._ledger = ledger
        self._buffer = buffer
        self._release = release
        self._wake = wake
        self._options = options
        self._clock = clock
        self.host = socket.gethostname()
        self.pid = os.getpid()
        # Replaced whole (never mutated): read without a lock by every handler thread.
        self.paused: frozenset[str] = frozenset()
        self._hinted = False
        self._retry_at = 0.0
        self._started = False
        retry = options.retry_timer
        self.lost_after = (
            retry if retry is not None else timedelta(seconds=3 * options.heartbeat_interval)
        )

    @property
    def pending(self) -> bool:
        """A pause or resume was hinted and the table not read since (and no failed read of
        it waits out its retry delay)."""
        return self._hinted and self._clock.monotonic() >= self._retry_at

    # -- called by the worker ----------------------------------------------------------------

    def start(self) -> None:
        """The worker is up: register it, and say so in the log."""
        options = self._options
        self._started = True
        try:
            self._apply(self._store.worker_beat(self._row(), FORGET_LOST_AFTER))
        except PgQueueError as exc:
            logger.warning(
                "worker %s: could not register in the workers table: %s", self.worker_id, exc
            )
        logger.info(
            "worker %s started on %s (pid %d, pgqueue-sync %s): entrypoints %s; %d threads, "
            "batch %d, buffer %d, retry_timer %s, mode %s",
            self.worker_id,
            self.host,
            self.pid,
            __version__,
            ", ".join(self.entrypoints),
            options.workers,
            options.batch_size,
            options.buffer_size,
            options.retry_timer,
            options.mode,
        )
        if self.paused:
            logger.info("paused entrypoints (not claimed): %s", ", ".join(sorted(self.paused)))

    def hint(self) -> None:
        """A pause or resume NOTIFY (or a reconnect of the listener): have the flusher read
        the paused set from the table. Any role can send a NOTIFY; only the table counts."""
        self._hinted = True
        self._wake()

    def stop(self) -> None:
        """A clean stop: remove the worker's row (if it started)."""
        if not self._started:
            return
        try:
            self._store.worker_gone(self.worker_id)
        except PgQueueError as exc:
            logger.warning("worker %s: could not remove its registry row: %s", self.worker_id, exc)

    # -- called by the flusher (a chore) ------------------------------------------------------

    def tick(self) -> None:
        """On each turn of the flusher: act on a hint, if one came. A read that fails is
        tried again on a turn a second later at the soonest (the flusher does not spin), or
        read with the next heartbeat."""
        if not self.pending:
            return
        self._hinted = False
        try:
            paused = self._store.paused_of(self.entrypoints)
        except BaseException:
            self._hinted = True
            self._retry_at = self._clock.monotonic() + HINT_RETRY
            raise
        self._apply(paused)

    def beat(self) -> None:
        """With each heartbeat: refresh the worker's row; read the paused set with it."""
        self._apply(self._store.worker_beat(self._row(), FORGET_LOST_AFTER))

    # -- called by the runner ------------------------------------------------------------------

    def hold_back(self, job: Job) -> Outcome | None:
        """A job of an entrypoint this worker believes paused reached a handler thread:
        if the table says it still is, the job goes back to the queue unstarted (no attempt
        used) and the returned outcome is not written; else (resumed meanwhile) None, and
        the job runs. Only jobs claimed just before a pause, or just after a resume, pay
        this read."""
        try:
            paused = job.entrypoint in self._store.paused_of([job.entrypoint])
        except PgQueueError as exc:
            logger.warning(
                "job %d: could not read whether %s is paused (%s)", job.id, job.entrypoint, exc
            )
            paused = True
        if not paused:
            self.paused = self.paused - {job.entrypoint}
            return None
        return self.give_back(job)

    def give_back(self, job: Job) -> Outcome:
        """Put a job that did not start back in the queue (no attempt used)."""
        try:
            self._release({job.id}, {job.id})
        except PgQueueError as exc:
            logger.warning(
                "job %d: could not give it back (%s); it runs after retry_timer", job.id, exc
            )
            self._ledger.forget([(job.id, job.attempts)])
        return Outcome(job.id, job.attempts, JobStatus.CANCELED, 0.0)

    # -- helpers ---------------------------------------------------------------------------

    def _apply(self, paused: frozenset[str]) -> None:
        """Take the paused set read from the table; give back buffered jobs it covers."""
        newly, resumed = paused - self.paused, self.paused - paused
        self.paused = paused
        if newly:
            logger.info("entrypoints paused: %s", ", ".join(sorted(newly)))
        if resumed:
            logger.info("entrypoints resumed: %s", ", ".join(sorted(resumed)))
        if not paused:
            return
        held = self._buffer.remove_if(lambda job: job.entrypoint in paused)
        if held:
            ids = {job.id for job in held}
            logger.info(
                "giving back %d buffered job(s) of paused entrypoints %s",
                len(ids),
                ", ".join(sorted({job.entrypoint for job in held})),
            )
            try:
                self._release(ids, ids)
            except PgQueueError as exc:
                # Forgotten: their heartbeat stops and they run after retry_timer.
                logger.warning(
                    "could not give back %d job(s) of paused entrypoints (%s); they run "
                    "after retry_timer",
                    len(ids),
                    exc,
                )
                self._ledger.forget([(job.id, job.attempts) for job in held])

    def _row(self) -> dict[str, Any]:
        stats = self._ledger.stats
        return {
            "id": self.worker_id,
            "host": self.host,
            "pid": self.pid,
            "entrypoints": list(self.entrypoints),
            "threads": self._options.workers,
            "busy": len(self._ledger.running_jobs()),
            "done": stats.succeeded + stats.failed,
            "failed": stats.failed,
            "version": __version__,
            "lost_after": self.lost_after,
            "options": jsonable(dataclasses.asdict(self._options)),
        }
