"""A plain-Python reference of a job's life in the queue table, without a database.

The state machines replay every claim, heartbeat, completion and release on this model and
compare it with the tables after each step. Its rules are those of ``sql/dml.py``, written
the simple way:

- a claim takes jobs left ``picked`` whose heartbeat is older than ``retry_timer`` (oldest
  heartbeat first), then ``queued`` ones that are due (priority, then id), up to a limit;
  each claimed job gets one more attempt, this worker, and a fresh heartbeat;
- a heartbeat refreshes only the jobs the worker holds (``picked``, its worker id);
- a completion is recorded only if the worker holds that attempt of the job (fencing);
  a finished job leaves the table and gets one log row, a retried one goes back to
  ``queued``, a ``failed`` one stays in the table, logged;
- a release puts held jobs back to ``queued``; unstarted ones give their attempt back;
- a cancel removes queued and failed jobs (logged ``canceled``, without a worker) and flags
  picked ones; a retried job is due ``delay`` seconds after its outcome is written;
- with a retry policy (``stop_after_attempt``, a fixed wait), an attempt that raised is
  retried until the last one, which ends ``failed``; ``SystemExit`` is never retried.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Collection, Iterable, Mapping
from datetime import datetime, timedelta

from pgqueue_sync.models import JobId, JobStatus

__all__ = ["ClaimError", "LogRow", "ModelJob", "Policy", "QueueModel", "Row"]

LIVE = (JobStatus.QUEUED, JobStatus.PICKED)


class ClaimError(AssertionError):
    """A claim took jobs the model says it must not have taken."""


Row = tuple[JobStatus, int, "uuid.UUID | None", "datetime | None", datetime, int, bool]
LogRow = tuple[JobId, JobStatus, int, "uuid.UUID | None"]


@dataclasses.dataclass(frozen=True)
class Policy:
    """A job retry policy as the model knows it: ``RetryPolicy(stop=stop_after_attempt(
    attempts), wait=wait_fixed(wait))``, retrying on Exception (not SystemExit)."""

    attempts: int
    wait: float

    def outcome(self, attempt: int, raised: str) -> tuple[JobStatus, float]:
        """The outcome of an attempt that raised (``"raise"`` or ``"exit"``), and its delay."""
        if raised == "raise" and attempt < self.attempts:
            return JobStatus.QUEUED, self.wait
        return JobStatus.FAILED, 0.0


@dataclasses.dataclass
class ModelJob:
    id: JobId
    status: JobStatus
    attempts: int
    worker: uuid.UUID | None
    heartbeat: datetime
    execute_after: datetime
    priority: int = 0
    cancel_requested: bool = False
    entrypoint: str = "e"

    def row(self) -> Row:
        """What the table must say; the heartbeat only matters while the job is picked."""
        beat = self.heartbeat if self.status is JobStatus.PICKED else None
        return (
            self.status,
            self.attempts,
            self.worker,
            beat,
            self.execute_after,
            self.priority,
            self.cancel_requested,
        )


@dataclasses.dataclass
class QueueModel:
    """The queue table and the log, as the engine must leave them."""

    jobs: dict[JobId, ModelJob] = dataclasses.field(default_factory=dict)
    # Every recorded outcome, in order: (job id, status, attempt, worker; None for a cancel).
    log: list[LogRow] = dataclasses.field(default_factory=list)
    # Every claim of a job: (job id, attempt, worker).
    claims: list[tuple[JobId, int, uuid.UUID]] = dataclasses.field(default_factory=list)

    # -- producers -------------------------------------------------------------------------

    def enqueue(
        self,
        ids: Iterable[JobId],
        now: datetime,
        priority: int | Iterable[int] = 0,
        delays: Iterable[float] | None = None,
    ) -> None:
        """New queued jobs; each due ``delay`` seconds from ``now`` (default: now)."""
        ids = list(ids)
        priorities = [priority] * len(ids) if isinstance(priority, int) else list(priority)
        waits = [0.0] * len(ids) if delays is None else list(delays)
        for job_id, prio, wait in zip(ids, priorities, waits, strict=True):
            assert job_id not in self.jobs, f"job id {job_id} reused"
            due = now + timedelta(seconds=wait)
            self.jobs[job_id] = ModelJob(job_id, JobStatus.QUEUED, 0, None, now, due, prio)

    # -- claims ----------------------------------------------------------------------------

    def stale(self, now: datetime, retry_timer: timedelta | None) -> list[ModelJob]:
        if retry_timer is None:
            return []
        return sorted(
            (
                j
                for j in self.jobs.values()
                if j.status is JobStatus.PICKED and j.heartbeat < now - retry_timer
            ),
            key=lambda j: j.heartbeat,
        )

    def fresh(self, now: datetime) -> list[ModelJob]:
        return sorted(
            (
                j
                for j in self.jobs.values()
                if j.status is JobStatus.QUEUED and j.execute_after <= now
            ),
            key=lambda j: (-j.priority, j.execute_after, j.id),
        )

    def claimable(self, now: datetime, retry_timer: timedelta | None) -> int:
        return len(self.stale(now, retry_timer)) + len(self.fresh(now))

    def next_claim(self, limit: int, now: datetime, retry_timer: timedelta | None) -> list[JobId]:
        """The jobs a claim of up to ``limit`` takes (ties among stale ones by id)."""
        stale = sorted(self.stale(now, retry_timer), key=lambda j: (j.heartbeat, j.id))
        return [j.id for j in [*stale, *self.fresh(now)][: max(limit, 0)]]

    def claim(
        self,
        worker: uuid.UUID,
        limit: int,
        claimed: Collection[JobId],
        now: datetime,
        retry_timer: timedelta | None,
    ) -> None:
        """Check a claim of up to ``limit`` jobs that returned ``claimed``, and apply it."""
        stale = self.stale(now, retry_timer)
        fresh = self.fresh(now)
        got = set(claimed)
        if len(got) != len(claimed):
            raise ClaimError(f"a job was claimed twice in one claim: {sorted(claimed)}")
        expected = min(max(limit, 0), len(stale) + len(fresh))
        if len(got) != expected:
            raise ClaimError(
                f"claimed {len(got)} job(s) with limit {limit}, expected {expected} "
                f"({len(stale)} stale, {len(fresh)} queued)"
            )
        eligible = {j.id for j in stale} | {j.id for j in fresh}
        if not got <= eligible:
            picked = sorted(got - eligible)
            detail = [(i, self.jobs[i].row()) if i in self.jobs else (i, None) for i in picked]
            raise ClaimError(f"claimed jobs that were not claimable: {detail}")
        # Stale jobs come first, oldest heartbeat first (ties in any order) ...
        stale_got = [j for j in stale if j.id in got]
        stale_left = [j for j in stale if j.id not in got]
        if (
            stale_left
            and stale_got
            and max(j.heartbeat for j in stale_got) > min(j.heartbeat for j in stale_left)
        ):
            raise ClaimError("a stale job was claimed before an older stale one")
        if stale_left and len(got) > len(stale_got):
            raise ClaimError("a queued job was claimed before a stale one")
        # ... then queued ones in order.
        fresh_got = [j.id for j in fresh if j.id in got]
        if fresh_got != [j.id for j in fresh[: len(fresh_got)]]:
            raise ClaimError(f"queued jobs claimed out of order: {fresh_got}")
        for job_id in sorted(got):
            job = self.jobs[job_id]
            job.status = JobStatus.PICKED
            job.attempts += 1
            job.worker = worker
            job.heartbeat = now
            self.claims.append((job_id, job.attempts, worker))

    # -- a worker's writes -----------------------------------------------------------------

    def holds(self, worker: uuid.UUID, job_id: JobId, attempt: int | None = None) -> bool:
        job = self.jobs.get(job_id)
        return (
            job is not None
            and job.status is JobStatus.PICKED
            and job.worker == worker
            and (attempt is None or job.attempts == attempt)
        )

    def heartbeat(self, worker: uuid.UUID, ids: Iterable[JobId], now: datetime) -> set[JobId]:
        alive = {i for i in ids if self.holds(worker, i)}
        for job_id in alive:
            self.jobs[job_id].heartbeat = now
        return alive

    def complete(
        self,
        worker: uuid.UUID,
        outcomes: Iterable[tuple[JobId, int, JobStatus]],
        now: datetime,
        delay: float = 0.0,
        delays: Mapping[JobId, float] | None = None,
    ) -> set[JobId]:
        """Record outcomes (job id, attempt, status); return the ids recorded. A retried
        job is due after its delay in ``delays``, else ``delay``."""
        recorded: set[JobId] = set()
        for job_id, attempt, status in outcomes:
            if not self.holds(worker, job_id, attempt):
                continue  # fenced: no longer this worker's attempt
            job = self.jobs[job_id]
            recorded.add(job_id)
            if status is JobStatus.QUEUED:
                job.status = JobStatus.QUEUED
                job.worker = None
                wait = delay if delays is None else delays.get(job_id, delay)
                job.execute_after = now + timedelta(seconds=wait)
                continue
            self.log.append((job_id, status, attempt, worker))
            if status is JobStatus.FAILED:
                job.status = JobStatus.FAILED
                job.worker = None
            else:
                del self.jobs[job_id]
        return recorded

    def release(
        self, worker: uuid.UUID, ids: Iterable[JobId], unstarted: Collection[JobId]
    ) -> set[JobId]:
        released = {i for i in ids if self.holds(worker, i)}
        for job_id in released:
            job = self.jobs[job_id]
            job.status = JobStatus.QUEUED
            job.worker = None
            if job_id in unstarted:
                job.attempts -= 1
        return released

    def cancel(self, ids: Iterable[JobId]) -> tuple[list[JobId], list[JobId]]:
        """Cancel jobs: (cancelled at once, asked to stop). Queued and failed jobs leave the
        table, logged ``canceled``; picked ones are flagged."""
        canceled: list[JobId] = []
        requested: list[JobId] = []
        for job_id in sorted(set(ids)):
            job = self.jobs.get(job_id)
            if job is None:
                continue
            if job.status in (JobStatus.QUEUED, JobStatus.FAILED):
                del self.jobs[job_id]
                self.log.append((job_id, JobStatus.CANCELED, job.attempts, None))
                canceled.append(job_id)
            elif job.status is JobStatus.PICKED:
                job.cancel_requested = True
                requested.append(job_id)
        return canceled, requested

    # -- views -----------------------------------------------------------------------------

    def terminal(self) -> dict[JobId, JobStatus]:
        """The outcome of each job that has one and is not live again."""
        out: dict[JobId, JobStatus] = {}
        for job_id, status, _, _ in self.log:
            job = self.jobs.get(job_id)
            if job is None or job.status not in LIVE:
                out[job_id] = status
        return out

    def live(self) -> set[JobId]:
        return {i for i, j in self.jobs.items() if j.status in LIVE}

    def held_by(self, worker: uuid.UUID) -> set[JobId]:
        return {
            i for i, j in self.jobs.items() if j.status is JobStatus.PICKED and j.worker == worker
        }
