"""``pgq-sync web``: the web dashboard, served by waitress (the ``web`` extra).

Listens on 127.0.0.1 unless ``--host`` says otherwise; on any address that is not a
loopback one it refuses to start without an access token (``--token``, better
``$PGQUEUE_WEB_TOKEN``: a command line is visible to every user of the machine). On a
loopback address without a token it answers only requests whose ``Host`` is a loopback name.
The token is never printed or logged.
"""

from __future__ import annotations

import contextlib
import logging
import signal
from collections.abc import Iterator
from types import FrameType
from typing import Any

import click

from .context import CliError, CliRefusal, QueueContext, with_queue

__all__ = ["MISSING_WEB_EXTRA", "web"]

MISSING_WEB_EXTRA = 'pgq-sync web needs the "web" extra: pip install "pgqueue-sync[web]"'
_WEB_MODULES = ("flask", "waitress", "werkzeug", "jinja2", "markupsafe", "itsdangerous")


@contextlib.contextmanager
def _stop_on_sigterm() -> Iterator[None]:
    """SIGTERM stops the server as Ctrl-C does (waitress closes its sockets and returns)."""

    def stop(signum: int, frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@click.command()
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Address to listen on. Any but a loopback one needs a token.",
)
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=8080,
    show_default=True,
    help="Port to listen on (0: a free one, printed).",
)
@click.option(
    "--token",
    envvar="PGQUEUE_WEB_TOKEN",
    show_envvar=True,
    help="Access token (16+ characters) every browser or script must present; prefer the "
    "environment variable.",
)
@click.option(
    "--actions/--read-only",
    default=False,
    show_default=True,
    help="Allow requeue, cancel, pause and resume from the pages.",
)
@click.option(
    "--refresh",
    type=click.FloatRange(1, 3600),
    default=10.0,
    show_default=True,
    help="Seconds between the overview's refreshes.",
)
@click.option(
    "--threads",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="Requests served at once.",
)
@click.option(
    "--secure-cookies",
    is_flag=True,
    help="Send the session cookie over HTTPS only (behind a TLS proxy).",
)
@with_queue(logging.INFO)
def web(
    queue: QueueContext,
    host: str,
    port: int,
    token: str | None,
    actions: bool,
    refresh: float,
    threads: int,
    secure_cookies: bool,
) -> None:
    """Serve the web dashboard: overview with live charts, jobs, a job, workers, paused
    entrypoints (and schedules). Read-only unless --actions."""
    try:
        from waitress.server import create_server  # noqa: PLC0415 - optional, when used

        from pgqueue_sync.web import create_app  # noqa: PLC0415
        from pgqueue_sync.web.app import LOOPBACK_HOSTS  # noqa: PLC0415
        from pgqueue_sync.web.security import MIN_TOKEN_LENGTH, is_loopback  # noqa: PLC0415
    except ModuleNotFoundError as exc:
        if (exc.name or "").partition(".")[0] in _WEB_MODULES:
            raise CliError(MISSING_WEB_EXTRA) from None
        raise
    token = token or None
    local = is_loopback(host)
    if token is None and not local:
        raise CliRefusal(
            f"--host {host} exposes the dashboard beyond this machine: give it an access "
            "token ($PGQUEUE_WEB_TOKEN or --token) that browsers and scripts must present"
        )
    if token is not None and len(token) < MIN_TOKEN_LENGTH:
        raise CliRefusal(f"the token must have at least {MIN_TOKEN_LENGTH} characters")
    queue.queries.verify()
    app = create_app(
        queue.queries,
        token=token,
        actions=actions,
        refresh_seconds=refresh,
        allowed_hosts=LOOPBACK_HOSTS if local and token is None else None,
        secure_cookies=secure_cookies,
    )
    # One port: a TcpWSGIServer, whose effective_host and effective_port are the bound ones.
    server: Any = create_server(app, host=host, port=port, threads=threads, ident="pgqueue-sync")
    bound = str(server.effective_host)
    shown = f"[{bound}]" if ":" in bound else bound
    mode = "actions enabled" if actions else "read-only"
    login = "token required" if token is not None else "no token: this machine only"
    click.echo(
        f"pgq-sync web: serving {queue.where} on http://{shown}:{server.effective_port}/ "
        f"({mode}, {login}); Ctrl-C stops",
    )
    with _stop_on_sigterm():
        try:
            server.run()
        except KeyboardInterrupt:
            pass
        finally:
            server.close()
    click.echo("pgq-sync web: stopped")
