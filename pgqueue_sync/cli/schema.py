"""Schema commands: install, uninstall, verify."""

from __future__ import annotations

import sys

import click

from .context import QueueContext, with_queue

__all__ = ["install", "uninstall", "verify"]


@click.command()
@with_queue()
def install(queue: QueueContext) -> None:
    """Create the queue's tables (idempotent)."""
    version = queue.queries.install()
    click.echo(f"pgqueue-sync schema v{version} installed in {queue.where}")


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_queue()
def uninstall(queue: QueueContext, yes: bool) -> None:
    """Drop the queue's tables (its jobs and log are lost)."""
    ctx = click.get_current_context()
    if not yes:
        if not sys.stdin.isatty():
            click.echo("refusing to drop the queue without --yes", err=True)
            ctx.exit(2)
        if not click.confirm(f"Drop the queue in {queue.where}, with its jobs and log?"):
            ctx.exit(1)
    queue.queries.uninstall()
    click.echo(f"pgqueue-sync schema removed from {queue.where}")


@click.command()
@with_queue()
def verify(queue: QueueContext) -> None:
    """Check the schema is installed and current."""
    version = queue.queries.verify()
    click.echo(f"pgqueue-sync schema v{version} is installed and current in {queue.where}")
