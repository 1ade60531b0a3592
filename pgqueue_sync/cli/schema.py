"""Schema commands: install, upgrade, uninstall, verify, and the SQL of install and upgrade."""

from __future__ import annotations

import click

from pgqueue_sync.sql import SCHEMA_VERSION, install_script, upgrade_script

from .context import CliError, QueueContext, confirm, with_queue

__all__ = ["install", "sql", "uninstall", "upgrade", "verify"]


@click.command()
@with_queue()
def install(queue: QueueContext) -> None:
    """Create the queue's tables (idempotent; an older schema is left to `upgrade`)."""
    version = queue.queries.install()
    click.echo(f"pgqueue-sync schema v{version} installed in {queue.where}")


@click.command()
@with_queue()
def upgrade(queue: QueueContext) -> None:
    """Upgrade the queue's schema to this version's (idempotent, in one transaction)."""
    applied = queue.queries.upgrade()
    if applied:
        click.echo(
            f"pgqueue-sync schema upgraded from v{applied[0] - 1} to v{applied[-1]} in "
            f"{queue.where}"
        )
    else:
        click.echo(f"pgqueue-sync schema v{SCHEMA_VERSION} is already current in {queue.where}")


@click.command()
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_queue()
def uninstall(queue: QueueContext, yes: bool) -> None:
    """Drop the queue's tables (its jobs and log are lost)."""
    if queue.queries.installed_version() is None:
        click.echo(f"nothing to uninstall: no queue in {queue.where} of {queue.database}")
        return
    confirm(f"Drop the queue in {queue.where} of {queue.database}, with its jobs and log?", yes)
    queue.queries.uninstall()
    click.echo(f"pgqueue-sync schema removed from {queue.where}")


@click.command()
@with_queue()
def verify(queue: QueueContext) -> None:
    """Check the schema is installed and current."""
    version = queue.queries.verify()
    click.echo(f"pgqueue-sync schema v{version} is installed and current in {queue.where}")


@click.group()
def sql() -> None:
    """Print the SQL of install or upgrade, for another migration tool (Alembic, Flyway,
    Django, ...). The version row is part of it."""


@sql.command("install")
@with_queue()
def sql_install(queue: QueueContext) -> None:
    """The SQL that installs the schema (no database needed)."""
    click.echo(install_script(queue.settings), nl=False)


@sql.command("upgrade")
@click.option(
    "--from",
    "from_version",
    type=click.IntRange(min=1),
    help="The installed version (default: read from the database).",
)
@with_queue()
def sql_upgrade(queue: QueueContext, from_version: int | None) -> None:
    """The SQL that upgrades the schema from its installed version."""
    if from_version is None:
        from_version = queue.queries.installed_version()
        if from_version is None:
            raise CliError(
                f"no queue is installed in {queue.where}: `pgq-sync sql install` prints the "
                "SQL that installs one"
            )
    click.echo(upgrade_script(queue.settings, from_version), nl=False)
