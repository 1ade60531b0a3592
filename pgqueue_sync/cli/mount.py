"""The ``pgq-sync`` commands mounted in another program's command line, on a queue that
program already knows (``flask pgq``, ``manage.py pgq``).

- :func:`queue_commands`: the commands of ``pgq-sync`` that work on one queue, without the
  options that say where it is (``--dsn``, ``--schema``, ``--prefix``): the host program
  puts a :class:`~pgqueue_sync.cli.context.QueueContext` in the click context instead.
- :func:`run_worker`: what a host's ``worker`` command does with the options of
  :func:`~pgqueue_sync.cli.run.worker_options`, over run options of its own configuration.
- :func:`invoke`: run a click command with ``pgq-sync``'s exit codes.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import click
from click.core import ParameterSource

from pgqueue_sync.errors import ConfigurationError, PgQueueError
from pgqueue_sync.options import RunOptions

from .context import EXIT_INTERRUPTED, CliRefusal
from .loader import AnyManager
from .logs import configure_logging, restored_logging
from .run import RUN_OPTIONS, apply_driver_options
from .worker import Recycle, WorkerProcess

__all__ = ["LOCATION_OPTIONS", "invoke", "on_a_given_queue", "queue_commands", "run_worker"]

# The options that say where the queue is: the host program says it instead.
LOCATION_OPTIONS = frozenset({"dsn", "schema", "prefix"})
# Commands of pgq-sync that are not for a given queue: run takes an APP (a host has its own
# worker command), demo makes a queue of its own.
LEFT_OUT = frozenset({"run", "demo"})


def on_a_given_queue(command: click.Command) -> click.Command:
    """``command`` (and its subcommands) without the options that say where the queue is."""
    mounted = copy.copy(command)
    mounted.params = [p for p in command.params if p.name not in LOCATION_OPTIONS]
    if isinstance(command, click.Group):
        assert isinstance(mounted, click.Group)
        mounted.commands = {name: on_a_given_queue(sub) for name, sub in command.commands.items()}
    return mounted


def queue_commands() -> list[click.Command]:
    """The commands of ``pgq-sync`` (:data:`pgqueue_sync.cli.app.COMMANDS`) that work on a
    given queue, ready to add to a host's group."""
    from .app import COMMANDS  # noqa: PLC0415 - app imports every command module

    return [on_a_given_queue(c) for c in COMMANDS if c.name not in LEFT_OUT]


def run_worker(
    manager: AnyManager, params: Mapping[str, Any], configured: Mapping[str, Any]
) -> int:
    """Run ``manager`` in this process as ``pgq-sync run`` would; return the exit code.

    ``params`` are the values of :func:`~pgqueue_sync.cli.run.worker_options` in the current
    click context; those given on the command line override ``configured`` (the host's own
    run options), which override run()'s defaults. Bad values are a usage error."""
    ctx = click.get_current_context()
    level = "DEBUG" if params["verbose"] else str(params["log_level"]).upper()
    configure_logging(level, params["log_format"])
    given = {
        key: params[key]
        for key in RUN_OPTIONS
        if ctx.get_parameter_source(key) is not ParameterSource.DEFAULT
    }
    run_kwargs = {**configured, **given}
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
    apply_driver_options(manager, params["listen_dsn"], params["transaction_pooling"])
    recycle = Recycle(params["max_jobs"], params["max_memory"])
    return WorkerProcess(manager, run_kwargs, recycle=recycle).main()


def invoke(command: click.Command, argv: Sequence[str], prog_name: str) -> int:
    """Run ``command`` on ``argv``; return the exit code as ``pgq-sync`` does (0 ok, 1
    failure, 2 usage error, 130 interrupted), errors reported on stderr."""
    try:
        with restored_logging():
            result = command.main(args=list(argv), prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Abort as exc:
        if isinstance(exc.__cause__, KeyboardInterrupt):
            click.echo("interrupted", err=True)
            return EXIT_INTERRUPTED
        return 1
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except PgQueueError as exc:  # raised outside a command's own reporting
        click.echo(f"error: {exc}", err=True)
        return 1
    return result if isinstance(result, int) else 0
