"""The ``pgq-sync`` click group, and ``run()``, which maps its outcomes to exit codes.

Exit codes: 0 ok, 1 failure, 2 usage error (bad option or argument), 130 interrupted.

``COMMANDS`` are plain click commands over a :class:`~pgqueue_sync.cli.context.QueueContext`:
another front end (a web framework's command group) can add them to a group of its own.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import click

from pgqueue_sync._version import __version__

from .dashboard import dashboard
from .demo import demo
from .inspection import jobs, log, queue_size, status, workers
from .metrics import metrics
from .mount import invoke
from .repair import cancel, clear, pause, purge, requeue, resume
from .run import run as run_command
from .schedules import schedules
from .schema import install, sql, uninstall, upgrade, verify
from .web import web

__all__ = ["COMMANDS", "cli", "run"]

COMMANDS: tuple[click.Command, ...] = (
    run_command,
    status,
    workers,
    jobs,
    dashboard,
    web,
    metrics,
    queue_size,
    log,
    requeue,
    cancel,
    pause,
    resume,
    purge,
    clear,
    install,
    upgrade,
    uninstall,
    verify,
    sql,
    schedules,
    demo,
)


@click.group(
    name="pgq-sync",
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.version_option(__version__, prog_name="pgq-sync", message="%(prog)s %(version)s")
def cli() -> None:
    """pgqueue-sync: a sync-first PostgreSQL job queue.

    `run APP` runs workers (APP's driver and settings say where the queue is). The other
    commands take --dsn (else $PGQUEUE_DSN, else libpq's PG* variables), --schema and
    --prefix. Read commands take --json. Exit codes: 0 ok, 1 failure, 2 usage error, 130
    interrupted.
    """


for _command in COMMANDS:
    cli.add_command(_command)


def run(argv: Sequence[str] | None = None) -> int:
    """Run the group on ``argv`` (default: the process's arguments); return the exit code."""
    return invoke(cli, sys.argv[1:] if argv is None else argv, "pgq-sync")


if __name__ == "__main__":
    sys.exit(run())
