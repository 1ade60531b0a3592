"""The standalone dashboard's access token, its login and session cookie, the Host check,
and escaping: hostile text in a job's entrypoint, payload, headers and traceback, and in a
pause reason, is shown as text, never run."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from flask.testing import FlaskClient
from psycopg import sql
from psycopg.types.json import Jsonb

from pgqueue_sync import ConfigurationError, QueueManager
from pgqueue_sync.web import create_app
from pgqueue_sync.web.security import same_secret

from .conftest import Page, page
from .shop import Shop

TOKEN = "s3cret-token-for-the-tests-0123456789"
HOSTILE = "<script>alert('x')</script>"


def test_a_short_token_is_refused(qm: QueueManager) -> None:
    for bad in ("", "short", 12345):
        with pytest.raises(ConfigurationError, match="at least 16 characters"):
            create_app(qm.queries, token=bad)  # type: ignore[arg-type]


def test_same_secret_compares_whole_values() -> None:
    assert same_secret(TOKEN, TOKEN)
    assert not same_secret(TOKEN[:-1], TOKEN)
    assert not same_secret(TOKEN + "x", TOKEN)
    assert not same_secret(None, TOKEN)
    assert not same_secret("", TOKEN)
    assert not same_secret("é" * 20, TOKEN)
    assert same_secret("é\ud800", "é\ud800")


def test_without_the_token_nothing_but_the_login_form(
    make_client: Callable[..., FlaskClient], shop: Shop
) -> None:
    client = make_client(token=TOKEN)
    response = client.get("/jobs?status=failed", headers={"Accept": "text/html"})
    assert response.status_code == 302
    assert response.headers["Location"] == "/login?next=/jobs?status%3Dfailed"
    assert client.get("/api/overview.json").status_code == 401
    assert client.post("/actions/requeue", data={"job_id": "1"}).status_code == 401
    assert client.get(f"/jobs/{shop.flaky}", headers={"Accept": "text/html"}).status_code == 302
    wrong = client.get("/api/overview.json", headers={"Authorization": "Bearer " + TOKEN[:-1]})
    assert wrong.status_code == 401
    with client.get("/static/dashboard.css") as css:  # the login form's stylesheet
        assert css.status_code == 200
    login = page(client, "/login?next=/jobs")
    assert 'type="password"' in login.html
    assert TOKEN not in login.html


def test_a_script_presents_the_token_as_a_bearer(
    make_client: Callable[..., FlaskClient], shop: Shop
) -> None:
    client = make_client(token=TOKEN)
    data = client.get("/api/overview.json", headers={"Authorization": f"Bearer {TOKEN}"})
    assert data.status_code == 200
    assert {r["entrypoint"] for r in data.get_json()["entrypoints"]} >= {"emails", "flaky"}
    assert client.get("/", headers={"Authorization": f"bearer {TOKEN}"}).status_code == 200


def test_login_sets_a_session_that_holds_no_token(
    make_client: Callable[..., FlaskClient], shop: Shop, caplog: pytest.LogCaptureFixture
) -> None:
    client = make_client(token=TOKEN)
    login = page(client, "/login?next=/workers")
    form = {"csrf_token": login.csrf(), "next": "/workers"}
    # Without the form's CSRF token: refused before the token is even looked at.
    assert client.post("/login", data={"token": TOKEN, "next": "/"}).status_code == 403
    with caplog.at_level(logging.WARNING, logger="pgqueue_sync.web"):
        refused = client.post("/login", data={**form, "token": TOKEN + "?"})
    assert refused.status_code == 401
    assert "Wrong token." in refused.get_data(as_text=True)
    assert "dashboard login refused" in caplog.text
    assert TOKEN not in caplog.text
    assert TOKEN not in refused.get_data(as_text=True)
    accepted = client.post("/login", data={**form, "token": TOKEN})
    assert accepted.status_code == 303
    assert accepted.headers["Location"] == "/workers"
    cookie = accepted.headers["Set-Cookie"]
    assert cookie.startswith("pgqueue_sync_session=")
    assert "HttpOnly" in cookie
    assert "SameSite=Strict" in cookie
    assert "Secure" not in cookie
    assert TOKEN not in cookie
    overview = page(client, "/")
    assert "log out" in overview.html
    # Logging out needs the CSRF token too, then the session is gone.
    assert client.post("/logout").status_code == 403
    out = client.post("/logout", data={"csrf_token": overview.csrf()})
    assert out.status_code == 303
    assert client.get("/", headers={"Accept": "text/html"}).status_code == 302


def test_a_session_of_another_token_is_not_logged_in(
    make_client: Callable[..., FlaskClient], qm: QueueManager
) -> None:
    key = "one secret key for both apps"
    first = make_client(token=TOKEN, secret_key=key)
    login = page(first, "/login")
    first.post("/login", data={"csrf_token": login.csrf(), "token": TOKEN, "next": "/"})
    assert first.get("/").status_code == 200
    cookie = first.get_cookie("pgqueue_sync_session")
    assert cookie is not None
    second = make_client(token=TOKEN[::-1], secret_key=key)
    second.set_cookie("pgqueue_sync_session", cookie.value)
    assert second.get("/", headers={"Accept": "text/html"}).status_code == 302


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil"])
def test_login_goes_back_only_to_this_site(
    make_client: Callable[..., FlaskClient], qm: QueueManager, target: str
) -> None:
    client = make_client(token=TOKEN)
    login = page(client, "/login")
    done = client.post("/login", data={"csrf_token": login.csrf(), "token": TOKEN, "next": target})
    assert done.headers["Location"] == "/"


def test_secure_cookies(make_client: Callable[..., FlaskClient], qm: QueueManager) -> None:
    client = make_client(token=TOKEN, secure_cookies=True)
    login = client.get("/login", base_url="https://localhost")
    token = Page(login.get_data(as_text=True)).csrf()
    done = client.post(
        "/login", data={"csrf_token": token, "token": TOKEN}, base_url="https://localhost"
    )
    assert "Secure" in done.headers["Set-Cookie"]


def test_allowed_hosts(make_client: Callable[..., FlaskClient], qm: QueueManager) -> None:
    client = make_client(allowed_hosts=("127.0.0.1", "localhost", "::1"))
    for host in ("127.0.0.1:8080", "localhost:1", "[::1]:8080", "LOCALHOST"):
        assert client.get("/paused", headers={"Host": host}).status_code == 200, host
    for host in ("evil.example", "evil.example:8080", "127.0.0.1.evil.example", "[::2]:80"):
        assert client.get("/paused", headers={"Host": host}).status_code == 400, host


@pytest.fixture
def hostile(qm: QueueManager, conn: psycopg.Connection[Any]) -> int:
    """A failed job written by hand, hostile in every text field the pages show; a logged
    outcome of it; a pause reason."""
    row = conn.execute(
        sql.SQL(
            "INSERT INTO {} (entrypoint, status, payload, headers, last_error, attempts)"
            " VALUES (%s, 'failed', %s, %s, %s, 1) RETURNING id"
        ).format(qm.settings.ident("jobs")),
        (
            '<img src=x onerror="alert(1)">',
            HOSTILE.encode(),
            Jsonb({HOSTILE: HOSTILE, "</pre>": "<!--"}),
            f"Traceback (most recent call last):\n</pre>{HOSTILE}\nValueError: {HOSTILE}",
        ),
    ).fetchone()
    assert row is not None
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (job_id, entrypoint, status, priority, attempts, traceback, headers,"
            " result) VALUES (%s, %s, 'exception', 0, 1, %s, %s, %s)"
        ).format(qm.settings.ident("log")),
        (row[0], "ok", f"KeyError: {HOSTILE}", Jsonb({"h": HOSTILE}), HOSTILE.encode()),
    )
    qm.queries.pause("emails", reason=HOSTILE)
    return int(row[0])


def test_hostile_text_is_escaped_on_every_page(
    make_client: Callable[..., FlaskClient], hostile: int
) -> None:
    client = make_client(actions=True)
    escaped = "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"
    for url in (
        "/",
        "/jobs",
        "/jobs?status=failed",
        "/jobs?status=exception",
        f"/jobs/{hostile}",
        f"/jobs/{hostile}?view=hex",
        f"/jobs/{hostile}?view=text",
        "/paused",
    ):
        html = page(client, url).html
        assert "<script>" not in html, url
        assert "<img src=x" not in html, url
        assert "</pre><script" not in html, url
        assert escaped in html or "&lt;img src=x onerror=" in html, url
    job = page(client, f"/jobs/{hostile}").html
    assert f"ValueError: {escaped}" in job
    assert f"&#34;{escaped}&#34;: &#34;{escaped}&#34;" in job  # the headers
    assert "&#34;&lt;/pre&gt;&#34;: &#34;&lt;!--&#34;" in job
    # The entrypoint, in the overview's row attribute and in the link's query.
    overview = page(client, "/").html
    assert 'data-entrypoint="&lt;img src=x onerror=&#34;alert(1)&#34;&gt;"' in overview
    assert "/jobs?entrypoint=%3Cimg+src%3Dx+onerror%3D%22alert(1)%22%3E" in overview
    # A filter with markup in it is an error page that shows the markup as text.
    error = page(client, "/jobs?entrypoint=%3Cscript%3E", 400).html
    assert "<script>" not in error
    assert "&lt;script&gt;" in error
