"""``manage.py pgq_worker`` and ``manage.py pgq``: the ``pgq-sync`` commands as Django
management commands, on the queue of a ``PgQueueBackend`` of ``TASKS``.

- ``manage.py pgq_worker [--backend ALIAS] [--queue Q ...] [options]``: run workers of the
  backend's tasks in this process, with the options of ``pgq-sync run`` (``--workers``,
  ``--mode drain``, ``--shutdown-timeout``, ...) over the backend's ``RUN_OPTIONS``; SIGTERM
  or Ctrl-C stops it gracefully. ``--queue`` (repeatable) serves only these queues.
- ``manage.py pgq [--backend ALIAS] status|workers|jobs|requeue|cancel|pause|resume|purge|
  install|upgrade|verify|uninstall|sql|dashboard|...``: the commands of ``pgq-sync`` on the
  backend's queue (no ``--dsn``, ``--schema`` or ``--prefix``: TASKS and DATABASES say).

The commands are click commands; :class:`ClickCommand` runs one as a management command
(``call_command("pgq_worker", "--mode", "drain")`` works too, with string arguments).
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Sequence
from typing import Any, NoReturn

import click
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connections

from pgqueue_sync.cli.context import META_KEY, QueueContext
from pgqueue_sync.cli.mount import invoke, queue_commands, run_worker
from pgqueue_sync.cli.run import worker_options
from pgqueue_sync.errors import ConfigurationError

from .backend import PgQueueBackend
from .compat import DEFAULT_TASK_BACKEND_ALIAS, task_backends

__all__ = ["ClickCommand", "pgq", "pgq_worker"]


def backend_of(alias: str) -> PgQueueBackend:
    """The PgQueueBackend ``TASKS[alias]`` (a usage error if it is another backend)."""
    try:
        backend = task_backends[alias]
    except Exception as exc:  # InvalidTaskBackend: no such alias
        raise click.UsageError(str(exc)) from None
    if not isinstance(backend, PgQueueBackend):
        raise click.UsageError(
            f"TASKS[{alias!r}] is a {type(backend).__name__}, not a PgQueueBackend: pass "
            "--backend ALIAS of one"
        )
    return backend


BACKEND_OPTION = click.option(
    "--backend",
    "backend_alias",
    default=DEFAULT_TASK_BACKEND_ALIAS,
    show_default=True,
    help="The alias in TASKS of the PgQueueBackend.",
)


@click.command(name="pgq_worker", context_settings={"help_option_names": ["-h", "--help"]})
@BACKEND_OPTION
@click.option(
    "--queue",
    "queues",
    multiple=True,
    help="Serve this queue (repeatable) [default: every queue of the backend's QUEUES].",
)
@worker_options
def pgq_worker(backend_alias: str, queues: Sequence[str], **params: Any) -> None:
    """Run workers of the backend's tasks until stopped (SIGTERM or Ctrl-C: gracefully).

    The options override the backend's OPTIONS["RUN_OPTIONS"].
    """
    backend = backend_of(backend_alias)
    try:
        manager = backend.manager(queues)
    except ConfigurationError as exc:
        raise click.UsageError(str(exc)) from None
    click.get_current_context().exit(run_worker(manager, params, backend.run_options))


@click.group(name="pgq", context_settings={"help_option_names": ["-h", "--help"]})
@BACKEND_OPTION
def pgq(backend_alias: str) -> None:
    """The queue of a PgQueueBackend: the commands of pgq-sync, on the queue that TASKS
    (SCHEMA, PREFIX) and DATABASES name; `worker` is `manage.py pgq_worker`."""
    backend = backend_of(backend_alias)
    context = QueueContext(settings=backend.settings, driver=backend.queries.driver)
    click.get_current_context().meta[META_KEY] = context


pgq.add_command(pgq_worker, name="worker")
for _command in queue_commands():
    pgq.add_command(_command)


class _PassThrough(CommandParser):
    """Hands every argument to the click command (which parses and documents them)."""

    def __init__(self, command: click.Command, prog: str) -> None:
        super().__init__(prog=prog, add_help=False)
        self.click_command = command

    def parse_args(  # type: ignore[override]
        self, args: Sequence[str] | None = None, namespace: argparse.Namespace | None = None
    ) -> argparse.Namespace:
        return argparse.Namespace(args=list(args or ()))

    def print_help(self, file: Any = None) -> None:
        invoke(self.click_command, ["--help"], self.prog)

    def error(self, message: str) -> NoReturn:
        raise CommandError(message)


class ClickCommand(BaseCommand):
    """A management command that runs a click command with its own options and exit codes
    (0 ok, 1 failure, 2 usage error, 130 interrupted)."""

    click_command: click.Command
    requires_system_checks: Any = ()
    requires_migrations_checks = False

    def create_parser(self, prog_name: str, subcommand: str, **kwargs: Any) -> CommandParser:
        return _PassThrough(self.click_command, f"{os.path.basename(prog_name)} {subcommand}")

    def run_from_argv(self, argv: list[str]) -> None:
        """``manage.py NAME ARGS...``: exit with the command's exit code."""
        self._called_from_command_line = True
        prog = f"{os.path.basename(argv[0])} {argv[1]}"
        try:
            code = invoke(self.click_command, argv[2:], prog)
        finally:
            connections.close_all()
        raise SystemExit(code)

    def execute(self, *args: Any, **options: Any) -> str:
        """``call_command(NAME, *args)``: CommandError unless the exit code is 0."""
        code = invoke(self.click_command, [str(a) for a in args], self.click_command.name or "")
        if code:
            raise CommandError(
                f"{self.click_command.name} exited with code {code}", returncode=code
            )
        return ""

    def handle(self, *args: Any, **options: Any) -> str:  # execute() runs the command
        raise NotImplementedError
