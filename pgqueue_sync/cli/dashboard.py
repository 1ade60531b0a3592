"""``pgq-sync dashboard``: a live view of the queue in the terminal (rich Live).

Every second (``--interval``): per entrypoint the backlog (due and deferred), jobs running,
failed, the jobs in and out and the failures of the last minute, the mean pick-up latency
and the oldest wait; then the workers. ``q`` or Ctrl-C leaves (exit code 0). Two reads per frame
(``Queries.status`` and ``Queries.workers``), safe on a large queue. A lost connection is
shown in the frame and the next frame tries again.
"""

from __future__ import annotations

import contextlib
import os
import select
import sys
import termios
import tty
from collections.abc import Callable, Iterator
from datetime import datetime, timezone

import click
from rich import box
from rich.console import Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from pgqueue_sync.admin_models import EntrypointStatus, WorkerInfo
from pgqueue_sync.retry import CONNECTION_ERRORS

from .context import QueueContext, with_queue
from .inspection import seconds

__all__ = ["Frame", "dashboard"]


class Frame:
    """What one refresh shows, built from the operator API's rows."""

    def __init__(self, queue: QueueContext) -> None:
        self.queue = queue
        self.where = f"{queue.where} of {queue.database}"

    def render(self) -> RenderableType:
        now = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        try:
            rows = self.queue.queries.status()
            workers = self.queue.queries.workers()
        except CONNECTION_ERRORS as exc:
            return Group(
                self._header(now, None),
                Text(f"database unreachable: {exc} (trying again)", style="bold red"),
            )
        return Group(self._header(now, workers), self._entrypoints(rows), self._workers(workers))

    def _header(self, now: str, workers: list[WorkerInfo] | None) -> Text:
        text = Text.assemble(("pgqueue-sync ", "bold"), f"{self.where}   {now}")
        if workers is not None:
            lost = sum(w.lost for w in workers)
            text.append(f"   workers: {len(workers) - lost} running")
            if lost:
                text.append(f", {lost} lost", style="yellow")
        text.append("   (q: quit)", style="dim")
        return text

    def _entrypoints(self, rows: list[EntrypointStatus]) -> Table:
        table = Table(
            box=box.SIMPLE_HEAD,
            title="entrypoints (in, out, failures: last minute; latency: due to start)",
            title_justify="left",
        )
        for name in ("entrypoint", "state"):
            table.add_column(name)
        for name in (
            "queued",
            "deferred",
            "running",
            "failed",
            "in/min",
            "out/min",
            "failures/min",
            "latency",
            "oldest wait",
        ):
            table.add_column(name, justify="right")
        for r in rows:
            table.add_row(
                r.entrypoint,
                Text("paused", style="yellow") if r.paused else Text("active", style="green"),
                str(r.queued),
                str(r.deferred),
                str(r.picked),
                Text(str(r.failed), style="red" if r.failed else ""),
                str(r.enqueued_last_minute),
                str(r.done_last_minute),
                Text(str(r.failed_last_minute), style="red" if r.failed_last_minute else ""),
                seconds(r.pickup_latency_seconds),
                seconds(r.oldest_waiting_seconds),
            )
        if not rows:
            table.add_row("(no job, no worker)", "", *[""] * 9)
        return table

    def _workers(self, workers: list[WorkerInfo]) -> Table:
        table = Table(box=box.SIMPLE_HEAD, title="workers", title_justify="left")
        for name in ("worker", "host", "pid", "state", "busy", "done", "failed", "heartbeat"):
            right = name in ("pid", "busy", "done", "failed", "heartbeat")
            table.add_column(name, justify="right" if right else "left")
        table.add_column("entrypoints")
        for w in workers:
            table.add_row(
                str(w.id)[:8],
                w.host,
                str(w.pid),
                Text("lost", style="red") if w.lost else Text("running", style="green"),
                f"{w.busy}/{w.threads}",
                str(w.jobs_done),
                str(w.jobs_failed),
                f"{seconds(w.heartbeat_age_seconds)} ago",
                ", ".join(w.entrypoints),
            )
        if not workers:
            table.add_row("(none)", *[""] * 8)
        return table


@contextlib.contextmanager
def keys() -> Iterator[Callable[[float], str]]:
    """A function that waits up to ``timeout`` seconds for a key and returns it ('' for
    none). On a terminal it reads keys as they are typed (cbreak mode: Ctrl-C still
    interrupts), restored on the way out; elsewhere it only waits."""
    stdin = sys.stdin
    if not stdin.isatty():

        def wait(timeout: float) -> str:
            select.select([], [], [], timeout)
            return ""

        yield wait
        return
    fd = stdin.fileno()
    saved = termios.tcgetattr(fd)
    tty.setcbreak(fd)

    def read(timeout: float) -> str:
        ready, _, _ = select.select([fd], [], [], timeout)
        return os.read(fd, 32).decode(errors="replace") if ready else ""

    try:
        yield read
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


@click.command()
@click.option(
    "--interval",
    type=click.FloatRange(min=0.2),
    default=1.0,
    show_default=True,
    help="Seconds between refreshes.",
)
@with_queue()
def dashboard(queue: QueueContext, interval: float) -> None:
    """A live view of the queue: backlog, rates, latency, failures, workers (q or Ctrl-C
    leaves)."""
    frame = Frame(queue)
    try:
        with keys() as key, Live(frame.render(), auto_refresh=False, screen=True) as live:
            while "q" not in key(interval).lower():
                live.update(frame.render(), refresh=True)
    except KeyboardInterrupt:
        pass
