"""``pgq-sync metrics``: the queue's Prometheus metrics, read from the database at each
scrape, served over HTTP (the ``metrics`` extra). The workers' own metrics are served by
``pgq-sync run APP --metrics-port P``."""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType

import click

from .context import CliError, QueueContext, with_queue

__all__ = ["metrics"]


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=9464,
    show_default=True,
    help="Port to listen on (0: a free one, printed).",
)
@click.option(
    "--cache-seconds",
    type=click.FloatRange(0, 3600),
    default=0.0,
    show_default=True,
    help="Serve a read again to scrapes that come sooner than this.",
)
@with_queue(logging.INFO)
def metrics(queue: QueueContext, host: str, port: int, cache_seconds: float) -> None:
    """Serve the queue's metrics (backlog by entrypoint and state, the oldest waiting job,
    failed jobs, live workers) for Prometheus: one query per scrape."""
    try:
        from prometheus_client import CollectorRegistry  # noqa: PLC0415

        from pgqueue_sync.metrics import QueueCollector, serve  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("prometheus_client"):
            raise CliError(
                'pgq-sync metrics needs the "metrics" extra: pip install "pgqueue-sync[metrics]"'
            ) from None
        raise
    queue.queries.verify()
    registry = CollectorRegistry()
    registry.register(QueueCollector(queue.queries, cache_seconds=cache_seconds))
    server = serve(registry, host, port)
    click.echo(f"pgq-sync metrics: serving {queue.where} on {server.url}; Ctrl-C stops")
    stop = threading.Event()

    def stopping(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, stopping) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        while not stop.wait(1.0):
            pass
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        server.close()
    click.echo("pgq-sync metrics: stopped")
