"""``flask pgq``: the ``pgq-sync`` commands on a Flask app's queue.

- ``flask pgq worker [options]``: run the app's workers in this process, with the options
  of ``pgq-sync run`` (``--workers``, ``--mode drain``, ``--shutdown-timeout``, ...) over the
  app's ``PGQUEUE_RUN_OPTIONS``; SIGTERM or Ctrl-C stops it gracefully. Each job runs in a
  fresh app context.
- ``flask pgq status|workers|jobs|requeue|cancel|pause|resume|purge|install|upgrade|verify|
  uninstall|sql|dashboard|...``: the commands of ``pgq-sync`` (:data:`pgqueue_sync.cli.app.
  COMMANDS`), on the queue the app's config names: they take no ``--dsn``, ``--schema`` or
  ``--prefix``.

For several worker processes, run several ``flask pgq worker`` under a process manager
(systemd, a container per worker, supervisord), or ``pgq-sync run`` with ``--processes``.
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource
from flask import current_app
from flask.cli import with_appcontext

from pgqueue_sync.cli.app import COMMANDS
from pgqueue_sync.cli.context import META_KEY, CliRefusal, QueueContext
from pgqueue_sync.cli.logs import configure_logging
from pgqueue_sync.cli.run import RUN_OPTIONS, apply_driver_options, run, worker_options
from pgqueue_sync.cli.worker import Recycle, WorkerProcess
from pgqueue_sync.errors import ConfigurationError
from pgqueue_sync.options import RunOptions

if TYPE_CHECKING:
    from .flask import PgQueue

__all__ = ["command_group"]

# The options that say where the queue is: the app's config says it instead.
LOCATION_OPTIONS = frozenset({"dsn", "schema", "prefix"})
# Commands of pgq-sync that are not for an app's queue: run takes an APP (here the app is
# given: worker), demo makes a queue of its own.
LEFT_OUT = frozenset({run.name, "demo"})


def _on_the_apps_queue(command: click.Command) -> click.Command:
    """``command`` (and its subcommands) without the options that say where the queue is."""
    mounted = copy.copy(command)
    mounted.params = [p for p in command.params if p.name not in LOCATION_OPTIONS]
    if isinstance(command, click.Group):
        assert isinstance(mounted, click.Group)
        mounted.commands = {name: _on_the_apps_queue(sub) for name, sub in command.commands.items()}
    return mounted


def command_group(ext: PgQueue) -> click.Group:
    """The ``pgq`` group of ``ext``'s apps (``init_app`` adds it to ``app.cli``)."""

    @click.group(name="pgq", context_settings={"help_option_names": ["-h", "--help"]})
    @with_appcontext
    def pgq() -> None:
        """The job queue of this app: `worker` runs its workers; the other commands are
        those of pgq-sync, on the queue that the app's config (PGQUEUE_DSN, PGQUEUE_SCHEMA,
        PGQUEUE_PREFIX) names."""
        manager = ext.manager(current_app)
        context = QueueContext(settings=manager.settings, driver=manager.driver)
        click.get_current_context().meta[META_KEY] = context

    @pgq.command()
    @worker_options
    def worker(**params: Any) -> None:
        """Run this app's workers until stopped (SIGTERM or Ctrl-C: gracefully).

        Each job runs in a fresh app context. The options override the app's
        PGQUEUE_RUN_OPTIONS.
        """
        ctx = click.get_current_context()
        level = "DEBUG" if params["verbose"] else params["log_level"].upper()
        configure_logging(level, params["log_format"])
        given = {
            key: params[key]
            for key in RUN_OPTIONS
            if ctx.get_parameter_source(key) is not ParameterSource.DEFAULT
        }
        run_kwargs = {**ext.run_options(current_app), **given}
        try:
            RunOptions.build(
                **{
                    **{key: params[key] for key in RUN_OPTIONS},
                    **run_kwargs,
                    "workers": run_kwargs.get("workers") or 1,
                }
            )
        except ConfigurationError as exc:
            raise CliRefusal(str(exc)) from None
        manager = ext.manager(current_app)
        apply_driver_options(manager, params["listen_dsn"], params["transaction_pooling"])
        recycle = Recycle(params["max_jobs"], params["max_memory"])
        ctx.exit(WorkerProcess(manager, run_kwargs, recycle=recycle).main())

    for command in COMMANDS:
        if command.name not in LEFT_OUT:
            pgq.add_command(_on_the_apps_queue(command))
    return pgq
