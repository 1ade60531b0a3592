"""Inspection commands: queue-size, log, clear."""

from __future__ import annotations

import click

from .context import QueueContext, print_table, with_queue

__all__ = ["clear", "log", "queue_size"]


@click.command("queue-size")
@with_queue()
def queue_size(queue: QueueContext) -> None:
    """Jobs per entrypoint and status."""
    stats = queue.queries.queue_size()
    print_table(
        ("entrypoint", "status", "count"), [(s.entrypoint, s.status, s.count) for s in stats]
    )


@click.command()
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="How many outcomes, newest first.",
)
@with_queue()
def log(queue: QueueContext, limit: int) -> None:
    """The most recent job outcomes."""
    entries = queue.queries.log(limit=limit)
    print_table(
        ("job", "entrypoint", "status", "attempts", "duration", "at"),
        [
            (
                e.job_id,
                e.entrypoint,
                e.status,
                e.attempts,
                e.duration,
                e.created.isoformat(timespec="seconds"),
            )
            for e in entries
        ],
    )


@click.command()
@click.option(
    "--entrypoint",
    "entrypoints",
    multiple=True,
    help="Only jobs of this entrypoint (repeatable).",
)
@with_queue()
def clear(queue: QueueContext, entrypoints: tuple[str, ...]) -> None:
    """Delete queued jobs (not running or failed ones)."""
    count = queue.queries.clear_queue(list(entrypoints) if entrypoints else None)
    click.echo(f"deleted {count} queued job(s)")
