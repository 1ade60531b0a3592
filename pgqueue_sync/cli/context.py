"""What every ``pgq-sync`` command shares: the queue it works on, its options, its errors.

A command takes a :class:`QueueContext` (settings, driver, queries), found in the click
context: a front end that already knows its queue (a web framework's command group, say)
puts one there, with its own settings and driver; ``pgq-sync`` builds one from ``--dsn``,
``--schema`` and ``--prefix`` (or the environment).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any, TypeVar

import click
from rich import box
from rich.console import Console
from rich.table import Table

from pgqueue_sync.admin_models import jsonable
from pgqueue_sync.db import Driver, PsycopgDriver
from pgqueue_sync.errors import PgQueueError
from pgqueue_sync.queries import Queries
from pgqueue_sync.settings import Settings
from pgqueue_sync.translate import database_location, translate_errors

from .logs import configure_logging

__all__ = [
    "DSN_HELP",
    "EXIT_INTERRUPTED",
    "EXIT_USAGE",
    "META_KEY",
    "CliError",
    "CliRefusal",
    "QueueContext",
    "confirm",
    "console",
    "json_option",
    "print_json",
    "print_table",
    "queue_context",
    "with_queue",
]

F = TypeVar("F", bound=Callable[..., Any])

EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

# Where a QueueContext is kept in ``click.Context.meta`` (shared by nested commands).
META_KEY = "pgqueue_sync.queue"


class CliError(click.ClickException):
    """A failure the command reports on one line (``error: ...``), exit code 1 by default."""

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.format_message()}", file=file, err=file is None)


class CliRefusal(CliError):
    """An argument the command refuses for what it would do (exit code 2, as a usage error)."""

    exit_code = EXIT_USAGE


class QueueContext:
    """The queue a command works on.

    Built lazily: ``settings`` from the options (else ``PGQUEUE_SCHEMA`` / ``PGQUEUE_PREFIX``),
    ``driver`` from ``--dsn`` (else ``PGQUEUE_DSN``, else libpq's ``PG*`` variables). A driver
    given to the constructor is the caller's and is not closed.
    """

    def __init__(
        self,
        *,
        settings: Settings | None = None,
        driver: Driver | None = None,
    ) -> None:
        self.dsn: str | None = None
        self.schema: str | None = None
        self.prefix: str | None = None
        self.verbose = False
        self._given = settings
        self._settings: Settings | None = None
        self._driver = driver
        self._owned: PsycopgDriver | None = None
        self._queries: Queries | None = None

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            if self._given is None:
                self._settings = Settings.from_env(schema=self.schema, prefix=self.prefix)
            else:
                self._settings = dataclasses.replace(
                    self._given,
                    schema=self.schema or self._given.schema,
                    prefix=self._given.prefix if self.prefix is None else self.prefix,
                )
        return self._settings

    @property
    def driver(self) -> Driver:
        if self._driver is None:
            self._owned = PsycopgDriver(self.dsn or "")
            self._driver = self._owned
        return self._driver

    @property
    def queries(self) -> Queries:
        if self._queries is None:
            self._queries = Queries(self.driver, self.settings)
        return self._queries

    @property
    def where(self) -> str:
        """Where the queue is, for messages: ``schema 'x'`` (and its prefix, if any)."""
        s = self.settings
        return f"schema {s.schema!r}" + (f", prefix {s.prefix!r}" if s.prefix else "")

    @property
    def database(self) -> str:
        """Which database the queue is in, for messages: ``database 'x' on host:port``."""
        with translate_errors(), self.driver.connection() as conn:
            return database_location(conn)

    def configure_logging(self, quiet: int = logging.WARNING) -> None:
        """Log to stderr: INFO with ``-v``, else ``quiet`` and above."""
        configure_logging(logging.getLevelName(logging.INFO if self.verbose else quiet))

    def close(self) -> None:
        """Close the driver this context opened (never one it was given)."""
        if self._owned is not None:
            self._owned.close()
            self._owned = None
            self._driver = None
            self._queries = None


def queue_context(ctx: click.Context | None = None) -> QueueContext:
    """The QueueContext of ``ctx`` (the current click context by default): the one in
    ``ctx.obj`` or a parent's, else the one in ``ctx.meta``, else a new one."""
    ctx = ctx if ctx is not None else click.get_current_context()
    found = ctx.find_object(QueueContext)
    if found is None:
        found = ctx.meta.get(META_KEY)
    if found is None:
        found = ctx.meta[META_KEY] = QueueContext()
        ctx.call_on_close(found.close)
    assert isinstance(found, QueueContext)
    return found


def _store(attribute: str) -> Callable[[click.Context, click.Parameter, Any], None]:
    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> None:
        if value is not None and value is not False:
            setattr(queue_context(ctx), attribute, value)

    return callback


@contextmanager
def reported_errors() -> Iterator[None]:
    """Library errors become one-line CLI errors (exit code 1)."""
    try:
        yield
    except PgQueueError as exc:
        raise CliError(str(exc)) from exc


DSN_HELP = "PostgreSQL conninfo or URI (default: $PGQUEUE_DSN, else libpq's PG* variables)."


def with_queue(
    quiet: int = logging.WARNING, *, verbose: bool = False, dsn_help: str = DSN_HELP
) -> Callable[[F], F]:
    """Give a command the queue options and its QueueContext as first argument.

    ``--dsn``, ``--schema`` and ``--prefix`` fill the context (and ``-v`` with ``verbose``:
    only commands that run a worker take it); the command runs with logging configured
    (``quiet``: the level without ``-v``) and library errors reported as ``error: ...``.
    """

    def decorate(func: F) -> F:
        @functools.wraps(func)
        def command(*args: Any, **kwargs: Any) -> Any:
            queue = queue_context()
            queue.configure_logging(quiet)
            with reported_errors():
                return func(queue, *args, **kwargs)

        options = [
            click.option(
                "--dsn",
                envvar="PGQUEUE_DSN",
                expose_value=False,
                callback=_store("dsn"),
                help=dsn_help,
            ),
            click.option(
                "--schema",
                expose_value=False,
                callback=_store("schema"),
                help="Schema of the queue (default: $PGQUEUE_SCHEMA, else public).",
            ),
            click.option(
                "--prefix",
                expose_value=False,
                callback=_store("prefix"),
                help="Prefix of the queue's tables (default: $PGQUEUE_PREFIX, else none).",
            ),
        ]
        if verbose:
            options.append(
                click.option(
                    "-v",
                    "--verbose",
                    is_flag=True,
                    expose_value=False,
                    callback=_store("verbose"),
                    help="Log what the library does (INFO).",
                )
            )
        wrapped: Callable[..., Any] = command
        for option in reversed(options):
            wrapped = option(wrapped)
        return wrapped  # type: ignore[return-value]

    return decorate


def console() -> Console:
    """A rich console on the current stdout: colours only on a terminal; outside one, a
    wide page, so that tables piped to a file or ``grep`` keep one line per row."""
    out = sys.stdout
    terminal = out.isatty()
    return Console(
        file=out,
        highlight=False,
        soft_wrap=False,
        width=None if terminal else 200,
        no_color=not terminal,
    )


def print_table(
    headers: Sequence[str],
    rows: Sequence[Sequence[object]],
    *,
    numeric: Sequence[str] = (),
    title: str | None = None,
    empty: str | None = None,
) -> None:
    """A table (rich): a header, one line per row; ``numeric`` columns right-aligned. With
    no row, the ``empty`` line instead, if given."""
    if not rows and empty is not None:
        click.echo(empty)
        return
    table = Table(
        box=box.SIMPLE_HEAD, title=title, title_justify="left", pad_edge=False, show_edge=False
    )
    for header in headers:
        table.add_column(header, justify="right" if header in numeric else "left")
    for row in rows:
        table.add_row(*("" if cell is None else str(cell) for cell in row))
    console().print(table)


def print_json(value: object) -> None:
    """``value`` as JSON (dataclasses, times and ids converted), indented, on stdout."""
    click.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


def json_option(func: F) -> F:
    """``--json``: print the result as JSON instead of a table (``as_json`` parameter)."""
    return click.option(
        "--json", "as_json", is_flag=True, help="Print JSON (for scripts) instead of a table."
    )(func)


def interactive() -> bool:
    """Whether someone can answer a question: stdin is a terminal."""
    return sys.stdin.isatty()


def confirm(question: str, yes: bool) -> None:
    """Ask ``question`` unless ``yes``; refuse (exit code 2) when nobody can answer."""
    if yes:
        return
    ctx = click.get_current_context()
    if not interactive():
        click.echo(
            f"refusing to {ctx.command.name} without --yes (no terminal to ask on)", err=True
        )
        ctx.exit(2)
    if not click.confirm(question):
        ctx.exit(1)
