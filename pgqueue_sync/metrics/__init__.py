"""Prometheus metrics for pgqueue-sync (the ``metrics`` extra: prometheus-client).

- :class:`WorkerMetrics`: a worker hook counting jobs, durations, pick-up latency, the
  buffer, threads, flushes, fenced outcomes and reconnects
  (``qm.add_hooks(WorkerMetrics())``).
- :class:`QueueCollector`: the queue read from the database at each scrape (backlog by
  entrypoint and state, the oldest waiting job, failed jobs, live workers).
- :func:`serve`: an HTTP endpoint for a registry. ``pgq-sync run APP --metrics-port P`` and
  ``pgq-sync metrics --port P`` use these. See docs/observability.md.
"""

from __future__ import annotations

from .queue import QueueCollector
from .serving import MetricsServer, MultiprocessMetrics, serve
from .worker import WorkerMetrics, status_label

__all__ = [
    "MetricsServer",
    "MultiprocessMetrics",
    "QueueCollector",
    "WorkerMetrics",
    "serve",
    "status_label",
]
