"""The dashboard's defences: CSRF tokens for its actions, the access token of the standalone
server, and the response headers that keep its pages from being framed or running foreign
scripts.

- **CSRF**: every action is a POST carrying a token kept in the session (one per session,
  ``secrets.token_urlsafe``), compared in constant time. The session is Flask's signed
  cookie: the host application's ``secret_key`` when the blueprint is mounted in it.
- **Access token** (standalone server): given at start, presented by the browser once on a
  login form (the session then holds a keyed fingerprint of it, never the token) or by a
  script as ``Authorization: Bearer <token>`` on each request. Compared in constant time,
  never logged.
- **Headers**: a Content-Security-Policy that allows only the dashboard's own script and
  stylesheet (no inline script or style, no framing), ``nosniff``, no referrer.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import secrets
from urllib.parse import urlsplit

from flask import Response, abort, current_app, request, session

from pgqueue_sync.errors import ConfigurationError

__all__ = [
    "CSRF_FIELD",
    "CSRF_HEADER",
    "MIN_TOKEN_LENGTH",
    "MissingSecretKeyError",
    "check_csrf",
    "csrf_token",
    "fingerprint",
    "is_loopback",
    "presented_bearer",
    "rotate_csrf_token",
    "safe_next",
    "same_secret",
    "secure_headers",
]

CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"
_CSRF_KEY = "pgqueue_sync.csrf"
# The shortest access token the standalone server accepts.
MIN_TOKEN_LENGTH = 16

_CSP = "; ".join(
    (
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "connect-src 'self'",
        "form-action 'self'",
        "base-uri 'none'",
        "frame-ancestors 'none'",
    )
)


def same_secret(given: str | None, expected: str) -> bool:
    """Whether ``given`` is ``expected``, in time that does not depend on where they differ
    (nor on their lengths: the digests are compared)."""
    if given is None:
        return False
    a = hashlib.sha256(given.encode("utf-8", "surrogatepass")).digest()
    b = hashlib.sha256(expected.encode("utf-8", "surrogatepass")).digest()
    return hmac.compare_digest(a, b)


def fingerprint(token: str) -> str:
    """What a logged-in session holds: a MAC of a fixed message keyed by the token, so the
    cookie neither holds nor hashes the token itself, and a new token logs everyone out."""
    return hmac.new(token.encode("utf-8"), b"pgqueue-sync dashboard session", "sha256").hexdigest()


class MissingSecretKeyError(ConfigurationError):
    """The application has no ``secret_key``, which the dashboard's CSRF tokens need: a
    mistake of the server's set-up, not of a request (an internal error, not a 400)."""


def _require_session() -> None:
    if not current_app.secret_key:
        raise MissingSecretKeyError(
            "the dashboard's actions keep a CSRF token in the session: set the Flask "
            "application's secret_key"
        )


def csrf_token() -> str:
    """The session's CSRF token (created on first use)."""
    _require_session()
    token = session.get(_CSRF_KEY)
    if not isinstance(token, str) or not token:
        token = secrets.token_urlsafe(32)
        session[_CSRF_KEY] = token
    return token


def rotate_csrf_token() -> None:
    """Forget the session's CSRF token (a new one is made on next use): after a login."""
    session.pop(_CSRF_KEY, None)


def check_csrf() -> None:
    """Abort with 403 unless the request carries the session's CSRF token (form field
    ``csrf_token`` or header ``X-CSRF-Token``)."""
    _require_session()
    expected = session.get(_CSRF_KEY)
    given = request.form.get(CSRF_FIELD) or request.headers.get(CSRF_HEADER)
    if not isinstance(expected, str) or not expected or not same_secret(given, expected):
        abort(403, description="missing or wrong CSRF token: reload the page and try again")


def presented_bearer() -> str | None:
    """The token of an ``Authorization: Bearer ...`` header, if the request has one."""
    scheme, _, value = request.headers.get("Authorization", "").partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def safe_next(target: str | None, default: str) -> str:
    """``target`` if it is a path on this site (not ``//host``, no scheme), else ``default``:
    where a form may send the browser back to."""
    if not target or not target.startswith("/") or target.startswith("//") or "\\" in target:
        return default
    parts = urlsplit(target)
    if parts.scheme or parts.netloc:
        return default
    return target


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps a server on this machine (127.0.0.0/8, ::1,
    localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def secure_headers(response: Response) -> Response:
    """The dashboard's response headers (set unless the application set its own)."""
    headers = response.headers
    headers.setdefault("Content-Security-Policy", _CSP)
    headers.setdefault("X-Content-Type-Options", "nosniff")
    headers.setdefault("Referrer-Policy", "no-referrer")
    headers.setdefault("X-Frame-Options", "DENY")
    if response.mimetype in ("text/html", "application/json"):
        headers.setdefault("Cache-Control", "no-store")
    return response
