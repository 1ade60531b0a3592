"""Serving metrics over HTTP: one process's registry, or every worker process's at once
(prometheus-client's multiprocess mode, for ``pgq-sync run --processes N``)."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import shutil
import tempfile
import threading
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

__all__ = ["MULTIPROC_ENV", "MetricsServer", "MultiprocessMetrics", "serve"]

logger = logging.getLogger(__name__)

# Where prometheus-client's multiprocess mode keeps each process's values; read when
# prometheus_client is imported, so a process must have it from its start.
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


@dataclasses.dataclass
class MetricsServer:
    """An HTTP server answering ``GET /metrics`` (any path, in fact) in a thread.

    Attributes:
        server: The WSGI server.
        thread: The thread serving it (a daemon).
    """

    server: WSGIServer
    thread: threading.Thread

    @property
    def host(self) -> str:
        """The address it listens on."""
        return str(self.server.server_address[0])

    @property
    def port(self) -> int:
        """The port it listens on (the one the OS chose, for port 0)."""
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        """The URL of its metrics, for a scraper."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def close(self) -> None:
        """Stop serving and wait (up to 5 s) for the thread to end."""
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(5.0)


def serve(
    registry: CollectorRegistry = REGISTRY, host: str = "127.0.0.1", port: int = 0
) -> MetricsServer:
    """Serve ``registry`` (default: prometheus-client's global one) on ``host:port`` (0: a
    free port) from a daemon thread."""
    server, thread = start_http_server(port, addr=host, registry=registry)
    return MetricsServer(server, thread)


class MultiprocessMetrics:
    """The supervisor's side of multiprocess mode: a directory of its own for the children's
    values (given to them in their environment), one endpoint adding them up, dead
    children's gauges dropped, the directory removed at the end."""

    def __init__(self, host: str, port: int) -> None:
        self.host = host
        self.port = port
        self.directory: str | None = None
        self.server: MetricsServer | None = None

    def env(self) -> dict[str, str]:
        """What the children's environment gets."""
        assert self.directory is not None, "start() first"
        return {MULTIPROC_ENV: self.directory}

    def start(self) -> MetricsServer:
        """Make the children's directory and serve the sum of what they write there."""
        from prometheus_client import multiprocess  # noqa: PLC0415

        self.directory = tempfile.mkdtemp(prefix="pgq-metrics-")
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=self.directory)  # type: ignore[no-untyped-call]
        self.server = serve(registry, self.host, self.port)
        return self.server

    def process_exited(self, pid: int) -> None:
        """A child is gone: its live gauges stop counting (its counters stay)."""
        if self.directory is None:
            return
        from prometheus_client import multiprocess  # noqa: PLC0415

        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(pid, self.directory)  # type: ignore[no-untyped-call]

    def close(self) -> None:
        """Stop serving and remove the children's directory."""
        if self.server is not None:
            self.server.close()
            self.server = None
        if self.directory is not None and os.path.isdir(self.directory):
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
