"""``pgq-sync run APP``: run the workers of an application, in one process or N.

The options mirror ``QueueManager.run()``; ``--processes`` starts a supervisor
(:mod:`pgqueue_sync.cli.supervisor`); each process runs as :mod:`pgqueue_sync.cli.worker`
says.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import click

from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.errors import ConfigurationError
from pgqueue_sync.options import RunOptions

from .context import CliError, CliRefusal
from .loader import AnyManager, load_app, sync_manager
from .logs import LEVELS, configure_logging
from .supervisor import Supervisor
from .worker import Recycle, WorkerProcess

__all__ = ["RUN_OPTIONS", "Seconds", "apply_driver_options", "run", "worker_options"]

F = TypeVar("F", bound=Callable[..., Any])

MISSING_METRICS_EXTRA = (
    'the metrics endpoint needs the "metrics" extra: pip install "pgqueue-sync[metrics]"'
)


class Seconds(click.ParamType):  # type: ignore[type-arg]  # generic from click 8.3
    """A duration in seconds (above zero), or ``none`` where run() takes None."""

    name = "seconds"

    def __init__(self, *, none: bool = False) -> None:
        self.none = none

    def get_metavar(self, param: click.Parameter, ctx: click.Context | None = None) -> str:
        return "SECONDS|none" if self.none else "SECONDS"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if value is None or isinstance(value, float):
            return value
        if self.none and str(value).lower() in ("none", "off"):
            return None
        try:
            seconds = float(value)
        except ValueError:
            self.fail(f"{value!r} is not a number of seconds", param, ctx)
        if not 0 < seconds < float("inf"):
            self.fail(f"{value!r}: give a number of seconds above zero", param, ctx)
        return seconds


# The parameters of run() that the options mirror, with their option names.
RUN_OPTIONS = {
    "workers": "--workers",
    "batch_size": "--batch-size",
    "buffer_size": "--buffer-size",
    "dequeue_timeout": "--dequeue-timeout",
    "retry_timer": "--retry-timer",
    "shutdown_timeout": "--shutdown-timeout",
    "heartbeat_interval": "--heartbeat-interval",
    "log_retention": "--log-retention",
    "mode": "--mode",
}
# Passed on to each child of a supervisor, as given.
CHILD_OPTIONS = {
    **RUN_OPTIONS,
    "max_jobs": "--max-jobs",
    "max_memory": "--max-memory",
    "log_level": "--log-level",
    "log_format": "--log-format",
    "listen_dsn": "--listen-dsn",
}


def apply_driver_options(
    manager: AnyManager, listen_dsn: str | None, transaction_pooling: bool
) -> None:
    """``--listen-dsn`` and ``--transaction-pooling`` apply to the worker's own connections
    (listen, fetch, complete), which it opens from the conninfo of APP's driver: the worker
    gets a driver of its own with these options. What APP does through ``qm.queries`` keeps
    APP's driver, as APP built it. Refused (a usage error) when they cannot apply: APP's
    driver is not a PsycopgDriver, or it already has another ``listen_dsn``."""
    if listen_dsn is None and not transaction_pooling:
        return
    sync = sync_manager(manager)
    driver = sync.driver
    if not isinstance(driver, PsycopgDriver):
        raise CliRefusal(
            f"--listen-dsn and --transaction-pooling configure a PsycopgDriver; APP's driver is "
            f"a {type(driver).__name__}: set these where APP builds its driver"
        )
    if listen_dsn is not None and driver.listen_dsn not in (None, listen_dsn):
        raise CliRefusal(
            "APP's driver already has another listen_dsn: drop --listen-dsn, or the "
            "listen_dsn in APP"
        )
    try:
        sync.driver = PsycopgDriver(
            driver.conninfo,
            connect_timeout=driver.connect_timeout,
            stall_timeout=driver.stall_timeout,
            listen_dsn=listen_dsn if listen_dsn is not None else driver.listen_dsn,
            transaction_pooling=transaction_pooling or driver.transaction_pooling,
        )
    except ConfigurationError as exc:
        raise CliRefusal(str(exc)) from None


def _child_args(app: str, params: dict[str, Any]) -> list[str]:
    args = [app]
    for key, option in CHILD_OPTIONS.items():
        value = params[key]
        if value is not None:
            args += [option, str(value)]
    if params["transaction_pooling"]:
        args.append("--transaction-pooling")
    for key in ("retry_timer", "shutdown_timeout", "log_retention"):
        if params[key] is None:
            args += [RUN_OPTIONS[key], "none"]
    return args


def _metrics() -> Any:
    """pgqueue_sync.metrics, or a clear error without the metrics extra."""
    try:
        from pgqueue_sync import metrics  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").startswith("prometheus_client"):
            raise CliError(MISSING_METRICS_EXTRA) from None
        raise
    return metrics


def _seconds(default: float | None, help_text: str, *, none: bool = False) -> Any:
    shown = "none" if default is None else f"{default:g}"
    return {
        "type": Seconds(none=none),
        "default": default,
        "help": f"{help_text} [default: {shown}]",
    }


def worker_options(func: F) -> F:
    """The options of a worker process: ``run()``'s (``--workers``, ``--mode``, ...),
    ``--max-jobs``/``--max-memory``, logging, and the worker's connections
    (``--listen-dsn``, ``--transaction-pooling``). ``pgq-sync run`` takes them, and so can
    another front end's worker command (``flask pgq worker``)."""
    options = [
        click.option(
            "--workers",
            type=click.IntRange(min=1),
            help="Handler threads per process [default: min(32, cpu_count + 4)].",
        ),
        click.option(
            "--batch-size",
            type=click.IntRange(min=1),
            default=10,
            show_default=True,
            help="Jobs claimed per query.",
        ),
        click.option(
            "--buffer-size",
            type=click.IntRange(min=1),
            help="Claimed jobs waiting for a thread, at most "
            "[default: 2 * max(batch size, workers)].",
        ),
        click.option(
            "--dequeue-timeout",
            **_seconds(
                30.0, "Longest idle wait before looking again (NOTIFY wakes a worker at once)."
            ),
        ),
        click.option(
            "--retry-timer",
            **_seconds(60.0, "Re-pick jobs of workers silent this long; none: never.", none=True),
        ),
        click.option(
            "--shutdown-timeout",
            **_seconds(
                None,
                "On stop, how long held jobs may take before the rest goes back to the "
                "queue; none: wait for them.",
                none=True,
            ),
        ),
        click.option(
            "--heartbeat-interval",
            type=Seconds(),
            help="How often held jobs' heartbeats are refreshed "
            "[default: retry timer / 5, at most 10].",
        ),
        click.option(
            "--log-retention",
            **_seconds(
                None, "Prune log rows older than this, every minute; none: keep all.", none=True
            ),
        ),
        click.option(
            "--mode",
            type=click.Choice(["continuous", "drain"]),
            default="continuous",
            show_default=True,
            help="drain: exit once no job is due.",
        ),
        click.option(
            "--max-jobs",
            type=click.IntRange(min=1),
            help="A process that has run this many jobs finishes what it holds and exits (replaced "
            "under --processes).",
        ),
        click.option(
            "--max-memory",
            type=click.IntRange(min=1),
            metavar="MB",
            help="A process whose memory reaches this many MB finishes what it holds and exits "
            "(replaced under --processes).",
        ),
        click.option(
            "--log-level",
            type=click.Choice(LEVELS, case_sensitive=False),
            default="INFO",
            show_default=True,
            help="Log this level and above, on stderr.",
        ),
        click.option(
            "--log-format",
            type=click.Choice(["text", "json"]),
            default="text",
            show_default=True,
            help="json: one JSON object per line (for log collectors).",
        ),
        click.option(
            "--listen-dsn",
            help="Where workers LISTEN, straight to PostgreSQL (behind PgBouncer in transaction "
            "mode); applies to the worker's connections, not to APP's own.",
        ),
        click.option(
            "--transaction-pooling",
            is_flag=True,
            help="The worker's connections go through a pooler in transaction mode (PgBouncer).",
        ),
        click.option("-v", "--verbose", is_flag=True, help="Log everything (--log-level DEBUG)."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


@click.command()
@click.argument("app")
@click.option(
    "--processes",
    type=click.IntRange(min=1),
    help="Run N worker processes under a supervisor that restarts those that die and stops "
    "them all on SIGTERM/SIGINT [default: one process, no supervisor].",
)
@worker_options
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    help="Serve the workers' Prometheus metrics on this port (0: a free one, logged); with "
    "--processes, the supervisor serves all processes' (the metrics extra).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics endpoint listens on.",
)
@click.option("--supervisor-fd", type=int, hidden=True)
@click.option("--metrics-multiprocess", is_flag=True, hidden=True)
def run(app: str, **params: Any) -> None:
    """Run the workers of APP until stopped (SIGTERM or Ctrl-C: gracefully).

    APP is module:attribute or path/to/file.py:attribute, naming a QueueManager, an
    AsyncQueueManager, or a callable that takes no argument and returns one. Its driver
    and settings say which database and queue; the options say how to run.
    """
    ctx = click.get_current_context()
    level = "DEBUG" if params["verbose"] else params["log_level"].upper()
    configure_logging(level, params["log_format"])
    run_kwargs = {key: params[key] for key in RUN_OPTIONS}
    try:  # refused here, before any process starts, rather than by each of them
        RunOptions.build(**{**run_kwargs, "workers": run_kwargs["workers"] or 1})
    except ConfigurationError as exc:
        raise CliRefusal(str(exc)) from None
    metrics_port = params["metrics_port"]
    if params["processes"] is not None:
        args = _child_args(app, params)
        multiprocess = None
        if metrics_port is not None:
            multiprocess = _metrics().MultiprocessMetrics(params["metrics_host"], metrics_port)
            args.append("--metrics-multiprocess")
        ctx.exit(Supervisor(args, params["processes"], metrics=multiprocess).run())
    manager = load_app(app)
    apply_driver_options(manager, params["listen_dsn"], params["transaction_pooling"])
    if metrics_port is not None or params["metrics_multiprocess"]:
        metrics = _metrics()
        sync_manager(manager).add_hooks(metrics.WorkerMetrics())
        if metrics_port is not None:
            server = metrics.serve(host=params["metrics_host"], port=metrics_port)
            logging.getLogger(__name__).info("serving this worker's metrics on %s", server.url)
    fd = params["supervisor_fd"]
    channel = None if fd is None else socket.socket(fileno=fd)
    recycle = Recycle(params["max_jobs"], params["max_memory"])
    logging.getLogger(__name__).debug("running %s with %s", app, run_kwargs)
    ctx.exit(WorkerProcess(manager, run_kwargs, recycle=recycle, supervisor=channel).main())
