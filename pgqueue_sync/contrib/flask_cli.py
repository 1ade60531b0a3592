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

from typing import TYPE_CHECKING, Any

import click
from flask import current_app
from flask.cli import with_appcontext

from pgqueue_sync.cli.context import META_KEY, QueueContext
from pgqueue_sync.cli.mount import queue_commands, run_worker
from pgqueue_sync.cli.run import worker_options

if TYPE_CHECKING:
    from .flask import PgQueue

__all__ = ["command_group"]


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
        manager = ext.manager(current_app)
        ctx = click.get_current_context()
        ctx.exit(run_worker(manager, params, ext.run_options(current_app)))

    for command in queue_commands():
        pgq.add_command(command)
    return pgq
