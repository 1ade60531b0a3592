"""The dashboard as an application of its own: a WSGI app (a Flask one) for any WSGI server
or framework, and what ``pgq-sync web`` serves.

    from pgqueue_sync.web import create_app

    app = create_app(qm.queries, token=os.environ["PGQUEUE_WEB_TOKEN"])

With a ``token``, every request must present it: a browser once, on the login form (its
session cookie then says it did), a script on each request as ``Authorization: Bearer
<token>``. Without one, the app trusts whoever reaches it: serve it on a loopback address
only (``pgq-sync web`` refuses to listen elsewhere without a token), where it also refuses
requests whose ``Host`` is not a loopback name (a web page's DNS rebinding cannot read it).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Collection

from flask import Flask, abort, redirect, render_template, request, session, url_for
from flask.typing import ResponseReturnValue

from pgqueue_sync.errors import ConfigurationError
from pgqueue_sync.queries import Queries

from .blueprint import create_blueprint
from .security import (
    MIN_TOKEN_LENGTH,
    check_csrf,
    csrf_token,
    fingerprint,
    presented_bearer,
    rotate_csrf_token,
    safe_next,
    same_secret,
    secure_headers,
)

__all__ = ["LOOPBACK_HOSTS", "create_app"]

logger = logging.getLogger(__name__)

_AUTH_KEY = "pgqueue_sync.auth"
# The names a browser on this machine reaches a loopback server by.
LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
# Requests that need no token: the login form and the stylesheet it uses.
_OPEN = frozenset({"login", "pgqueue_sync.static"})


def _hostname(host: str) -> str:
    """The name in a ``Host`` header, without its port (``[::1]:8080`` -> ``::1``)."""
    if host.startswith("["):
        return host[1:].partition("]")[0]
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def create_app(
    queries: Queries,
    *,
    token: str | None = None,
    actions: bool = False,
    refresh_seconds: float = 10.0,
    page_size: int = 50,
    allowed_hosts: Collection[str] | None = None,
    secret_key: str | bytes | None = None,
    secure_cookies: bool = False,
) -> Flask:
    """A Flask (WSGI) application serving the dashboard of ``queries`` at its root.

    - ``token``: required of every request (at least 16 characters; pass it from the
      environment, not a command line). None: no login (a loopback server only).
    - ``allowed_hosts``: the ``Host`` names requests may carry (None: any).
    - ``secret_key``: signs the session cookie; a random one per process by default (a
      restart logs everyone out).
    - ``secure_cookies``: send the session cookie over HTTPS only (behind a TLS proxy).
    """
    if token is not None and (not isinstance(token, str) or len(token) < MIN_TOKEN_LENGTH):
        raise ConfigurationError(
            f"the dashboard's token must be a str of at least {MIN_TOKEN_LENGTH} characters"
        )
    app = Flask(__name__, static_folder=None)  # the blueprint serves its own
    app.secret_key = secret_key if secret_key is not None else secrets.token_bytes(32)
    app.config.update(
        SESSION_COOKIE_NAME="pgqueue_sync_session",
        SESSION_COOKIE_HTTPONLY=True,
        SESSION_COOKIE_SAMESITE="Strict",
        SESSION_COOKIE_SECURE=secure_cookies,
        MAX_CONTENT_LENGTH=64 * 1024,
    )
    app.register_blueprint(
        create_blueprint(
            queries, actions=actions, refresh_seconds=refresh_seconds, page_size=page_size
        )
    )
    app.after_request(secure_headers)
    hosts = None if allowed_hosts is None else {h.lower() for h in allowed_hosts}
    expected = None if token is None else fingerprint(token)

    @app.before_request
    def gate() -> ResponseReturnValue | None:
        if hosts is not None and _hostname(request.host).lower() not in hosts:
            abort(400, description="unexpected Host header")
        if token is None or request.endpoint in _OPEN:
            return None
        bearer = presented_bearer()
        if bearer is not None:
            if same_secret(bearer, token):
                return None
            abort(401, description="wrong token")
        if same_secret(session.get(_AUTH_KEY), expected or ""):
            return None
        if request.method == "GET" and request.accept_mimetypes.accept_html:
            return redirect(url_for("login", next=request.full_path.rstrip("?")))
        abort(401, description="log in, or send the token as 'Authorization: Bearer ...'")

    @app.context_processor
    def logout_form() -> dict[str, object]:
        # The blueprint's pages show a log-out button when there is a login.
        if token is None:
            return {"logout_url": None}
        return {"logout_url": url_for("logout"), "logout_csrf": csrf_token}

    @app.route("/login", methods=["GET", "POST"])
    def login() -> ResponseReturnValue:
        if token is None:
            return redirect(url_for("pgqueue_sync.overview"))
        target = safe_next(request.values.get("next"), url_for("pgqueue_sync.overview"))
        failed = False
        if request.method == "POST":
            check_csrf()
            if same_secret(request.form.get("token"), token):
                rotate_csrf_token()
                session[_AUTH_KEY] = expected
                return redirect(target, code=303)
            logger.warning("dashboard login refused (wrong token) from %s", request.remote_addr)
            failed = True
        return render_template(
            "pgqueue_sync/login.html",
            csrf=csrf_token(),
            target=target,
            failed=failed,
            title="pgqueue-sync",
        ), (401 if failed else 200)

    @app.post("/logout")
    def logout() -> ResponseReturnValue:
        check_csrf()
        session.clear()
        return redirect(url_for("login"), code=303)

    return app
