"""The queue's metrics, read from the database at each scrape: a prometheus-client
collector (the ``metrics`` extra).

    registry.register(QueueCollector(qm.queries))

Each scrape runs one statement (``Queries.queue_metrics``): one pass over the queue table,
counting, and the workers registry. ``cache_seconds`` serves a read again to scrapes that
come sooner (several Prometheus servers, or dashboards that poll).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator

from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from pgqueue_sync.admin import AdminQueries
from pgqueue_sync.admin_models import QueueMetrics

__all__ = ["QueueCollector"]

logger = logging.getLogger(__name__)

_STATES = ("queued", "deferred", "picked", "failed")


class QueueCollector(Collector):
    """``pgqueue_queue_jobs{entrypoint,status}``, ``pgqueue_queue_oldest_waiting_seconds
    {entrypoint}``, ``pgqueue_workers{state}``, and whether the read worked
    (``pgqueue_queue_up``) and how long it took."""

    def __init__(self, queries: AdminQueries, *, cache_seconds: float = 0.0) -> None:
        self.queries = queries
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._last: tuple[float, QueueMetrics, float] | None = None

    def read(self) -> tuple[QueueMetrics, float]:
        """The queue's numbers (cached up to ``cache_seconds``) and the seconds the read
        took. Raises what the query raises."""
        with self._lock:
            now = time.monotonic()
            if self._last is not None and now - self._last[0] < self.cache_seconds:
                return self._last[1], self._last[2]
            metrics = self.queries.queue_metrics()
            took = time.monotonic() - now
            self._last = (now, metrics, took)
            return metrics, took

    def collect(self) -> Iterator[GaugeMetricFamily]:
        """Read the queue's metrics (or the cached reading) and yield them as gauges."""
        up = GaugeMetricFamily(
            "pgqueue_queue_up", "Whether the last read of the queue's metrics worked."
        )
        try:
            metrics, took = self.read()
        except Exception as exc:
            logger.warning("reading the queue's metrics failed: %s", exc)
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield GaugeMetricFamily(
            "pgqueue_queue_scrape_seconds", "How long reading the queue's metrics took.", took
        )
        jobs = GaugeMetricFamily(
            "pgqueue_queue_jobs",
            "Jobs in the queue table, by entrypoint and state (queued: due now; deferred: "
            "due later; picked: held by a worker; failed: out of attempts).",
            labels=["entrypoint", "status"],
        )
        oldest = GaugeMetricFamily(
            "pgqueue_queue_oldest_waiting_seconds",
            "How long the oldest due job of each entrypoint has waited (0: none waits).",
            labels=["entrypoint"],
        )
        failed = 0
        for row in metrics.backlog:
            for state in _STATES:
                jobs.add_metric([row.entrypoint, state], getattr(row, state))
            oldest.add_metric([row.entrypoint], row.oldest_waiting_seconds or 0.0)
            failed += row.failed
        yield jobs
        yield oldest
        yield GaugeMetricFamily(
            "pgqueue_queue_failed_jobs",
            "Jobs that ran out of attempts and wait for a requeue, all entrypoints.",
            failed,
        )
        workers = GaugeMetricFamily(
            "pgqueue_workers",
            "Workers in the registry: live, or lost (no heartbeat for longer than their "
            "retry_timer).",
            labels=["state"],
        )
        workers.add_metric(["live"], metrics.workers_live)
        workers.add_metric(["lost"], metrics.workers_lost)
        yield workers
