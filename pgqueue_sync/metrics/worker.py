"""The worker's metrics: a :class:`~pgqueue_sync.engine.hooks.WorkerHooks` that counts what
the worker does in prometheus-client metrics (the ``metrics`` extra).

    qm.add_hooks(WorkerMetrics())            # in prometheus_client.REGISTRY
    qm.add_hooks(WorkerMetrics(registry))    # or a CollectorRegistry of yours

Every ``WorkerMetrics`` on one registry shares the same metrics (a second one, for a second
QueueManager in the process, adds to them). Under prometheus-client's multiprocess mode
(``PROMETHEUS_MULTIPROC_DIR``) the gauges add up over live processes.
"""

from __future__ import annotations

import contextlib
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram

from pgqueue_sync.engine.hooks import WorkerHooks
from pgqueue_sync.models import Job, JobId, JobStatus, Outcome, WorkerStats

if TYPE_CHECKING:
    from pgqueue_sync.engine.worker import Worker

__all__ = ["DURATION_BUCKETS", "FLUSH_BUCKETS", "WorkerMetrics", "status_label"]

# Seconds: from a millisecond to ten minutes.
DURATION_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    120.0,
    300.0,
    600.0,
)
# Outcomes written by one flush.
FLUSH_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000)


def status_label(status: JobStatus) -> str:
    """The ``status`` label of ``pgqueue_jobs_total``: the outcome, ``retried`` for an
    attempt that failed and will run again."""
    return "retried" if status is JobStatus.QUEUED else status.value


class _Families:
    """The metrics themselves, once per registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.jobs = Counter(
            "pgqueue_jobs",
            "Attempts run by this worker, by entrypoint and outcome (retried: failed, runs again).",
            ["entrypoint", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "pgqueue_job_duration_seconds",
            "How long handlers ran, by entrypoint.",
            ["entrypoint"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.latency = Histogram(
            "pgqueue_pickup_latency_seconds",
            "From when a job was due to when its handler started, by entrypoint.",
            ["entrypoint"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.buffered = Gauge(
            "pgqueue_buffer_jobs",
            "Claimed jobs waiting in the worker's buffer for a thread.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.capacity = Gauge(
            "pgqueue_buffer_capacity",
            "The buffer's bound (buffer_size).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.busy = Gauge(
            "pgqueue_threads_busy",
            "Handler threads running a job.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.threads = Gauge(
            "pgqueue_threads",
            "Handler threads (workers).",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.claimed = Counter(
            "pgqueue_jobs_claimed", "Jobs claimed from the queue.", registry=registry
        )
        self.flush = Histogram(
            "pgqueue_flush_outcomes",
            "Outcomes written per flush (one statement and one commit each).",
            buckets=FLUSH_BUCKETS,
            registry=registry,
        )
        self.fenced = Counter(
            "pgqueue_fenced_outcomes",
            "Outcomes discarded because another worker had re-picked their job.",
            registry=registry,
        )
        self.released = Counter(
            "pgqueue_jobs_released",
            "Held jobs given back to the queue (shutdown deadline, stuck threads, paused).",
            registry=registry,
        )
        # Labelled children by metric and labels: labels() parses its arguments each call.
        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}
        self.reconnects = Counter(
            "pgqueue_reconnects",
            "The worker's connections reopened after a loss, by connection.",
            ["connection"],
            registry=registry,
        )

    def child(self, metric: Any, *labels: str) -> Any:
        """``metric.labels(*labels)``, looked up once."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found


_FAMILIES: weakref.WeakKeyDictionary[CollectorRegistry, _Families] = weakref.WeakKeyDictionary()
_FAMILIES_LOCK = threading.Lock()


def _families(registry: CollectorRegistry) -> _Families:
    with _FAMILIES_LOCK:
        families = _FAMILIES.get(registry)
        if families is None:
            families = _FAMILIES[registry] = _Families(registry)
        return families


class WorkerMetrics(WorkerHooks):
    """Worker metrics in ``registry`` (default: prometheus-client's global one)."""

    def __init__(self, registry: CollectorRegistry = REGISTRY) -> None:
        self.registry = registry
        self._m = _families(registry)
        self._lock = threading.Lock()
        # The worker of the current run, and the buffer fill last reported for it.
        self._worker: Worker | None = None
        self._buffered = 0
        self._threads = 0

    def worker_started(self, worker: Worker) -> None:
        with self._lock:
            self._worker = worker
            self._threads = worker.options.workers
        self._m.threads.inc(worker.options.workers)
        self._m.capacity.inc(worker.options.buffer_size)

    def worker_stopped(self, stats: WorkerStats) -> None:
        with self._lock:
            worker, self._worker = self._worker, None
            buffered, self._buffered = self._buffered, 0
            threads, self._threads = self._threads, 0
        self._m.buffered.dec(buffered)
        self._m.threads.dec(threads)
        if worker is not None:
            self._m.capacity.dec(worker.options.buffer_size)

    def claimed(self, jobs: Sequence[Job]) -> None:
        if jobs:
            self._m.claimed.inc(len(jobs))
            self._buffer_changed()

    def job_scope(self, job: Job) -> contextlib.AbstractContextManager[None]:
        return self._busy()

    @contextlib.contextmanager
    def _busy(self) -> Iterator[None]:
        self._m.busy.inc()
        try:
            yield
        finally:
            self._m.busy.dec()

    def job_started(self, job: Job) -> None:
        due = job.execute_after.timestamp()
        self._m.child(self._m.latency, job.entrypoint).observe(max(0.0, time.time() - due))
        self._buffer_changed()

    def job_finished(self, job: Job, outcome: Outcome) -> None:
        self._m.child(self._m.jobs, job.entrypoint, status_label(outcome.status)).inc()
        self._m.child(self._m.duration, job.entrypoint).observe(outcome.duration)

    def job_timed_out(self, job: Job, outcome: Outcome) -> None:
        self.job_finished(job, outcome)

    def outcomes_written(self, recorded: Sequence[JobId], fenced: Sequence[JobId]) -> None:
        self._m.flush.observe(len(recorded) + len(fenced))
        if fenced:
            self._m.fenced.inc(len(fenced))

    def released(self, job_ids: Sequence[JobId]) -> None:
        if job_ids:
            self._m.released.inc(len(job_ids))
            self._buffer_changed()

    def reconnected(self, connection: str) -> None:
        self._m.reconnects.labels(connection).inc()

    def _buffer_changed(self) -> None:
        with self._lock:
            worker = self._worker
            if worker is None:
                return
            now = worker.buffer.qsize()
            delta, self._buffered = now - self._buffered, now
        if delta:
            self._m.buffered.inc(delta)
