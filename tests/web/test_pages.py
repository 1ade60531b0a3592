"""The dashboard's pages over a real queue (Flask's test client): the numbers, filters and
paging, a job's payload, headers, traceback and outcomes, workers, paused entrypoints,
schedules where the queue has them, and the dashboard mounted in an application."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import pytest
from flask import Flask, abort, request
from flask.testing import FlaskClient

from pgqueue_sync import JobStatus, Queries, QueueManager
from pgqueue_sync.web import create_app, create_blueprint
from tests.conftest import Runner

from .conftest import Page, page
from .shop import HEADERS, Shop


def test_overview_shows_each_entrypoint_and_the_totals(client: FlaskClient, shop: Shop) -> None:
    overview = page(client, "/")
    numbers = {
        name: (
            row["queued"],
            row["deferred"],
            row["picked"],
            row["failed"],
            row["done_last_minute"],
            row["failed_last_minute"],
            row["enqueued_last_minute"],
        )
        for name, row in overview.rows.items()
    }
    assert numbers == {
        "emails": ("3", "0", "0", "0", "0", "0", "3"),
        "flaky": ("0", "0", "0", "1", "1", "1", "1"),
        "ok": ("0", "0", "0", "0", "2", "0", "2"),
        "reports": ("0", "2", "0", "0", "0", "0", "2"),
    }
    assert overview.totals == {
        "queued": "3",
        "deferred": "2",
        "picked": "0",
        "failed": "1",
        "enqueued_last_minute": "8",
        "done_last_minute": "3",
    }
    # The failed count links to the failed jobs of that entrypoint.
    assert ("/jobs?status=failed&entrypoint=flaky", "1") in overview.links
    # Read-only: no action form, no CSRF token.
    assert overview.forms == []
    assert "read-only" in overview.html


def test_overview_json_has_the_status_and_the_last_hour_per_minute(
    client: FlaskClient, shop: Shop
) -> None:
    data = client.get("/api/overview.json").get_json()
    assert {row["entrypoint"]: row["queued"] for row in data["entrypoints"]} == {
        "emails": 3,
        "flaky": 0,
        "ok": 0,
        "reports": 0,
    }
    assert data["workers"] == {"running": 0, "lost": 0}
    assert len(data["rates"]) == 60
    assert sum(r["enqueued"] for r in data["rates"]) == 8
    assert sum(r["done"] for r in data["rates"]) == 3
    assert sum(r["failed"] for r in data["rates"]) == 1
    two = client.get("/api/overview.json?minutes=2").get_json()
    assert len(two["rates"]) == 2
    assert two["rates"][-1]["minute"] == data["rates"][-1]["minute"]
    only = client.get("/api/overview.json?minutes=60&entrypoint=ok").get_json()
    assert sum(r["done"] for r in only["rates"]) == 2
    for bad in ("0", "1441", "x", "-5"):
        assert client.get(f"/api/overview.json?minutes={bad}").status_code == 400


def test_jobs_filter_by_status_and_entrypoint(client: FlaskClient, shop: Shop) -> None:
    def ids(url: str) -> list[int]:
        listing = page(client, url)
        return [int(text) for href, text in listing.links if href.startswith("/jobs/")]

    live = sorted([*shop.emails, *shop.reports, shop.flaky], reverse=True)
    assert ids("/jobs") == live
    assert ids("/jobs?status=failed") == [shop.flaky]
    assert ids("/jobs?status=queued&entrypoint=reports") == sorted(shop.reports, reverse=True)
    assert ids("/jobs?entrypoint=emails") == sorted(shop.emails, reverse=True)
    assert ids("/jobs?status=successful") == sorted(shop.ok, reverse=True)
    assert ids("/jobs?status=exception") == []
    listing = page(client, "/jobs?status=failed")
    assert "ValueError: order" in listing.html  # the error's last line
    bad = page(client, "/jobs?status=bogus", 400)
    assert "unknown job status &#39;bogus&#39;" in bad.html
    assert "invalid entrypoint name" in page(client, "/jobs?entrypoint=a%20b", 400).html


def test_jobs_page_by_keyset_cursor(make_client: Callable[..., FlaskClient], shop: Shop) -> None:
    client = make_client(page_size=2)
    live = sorted([*shop.emails, *shop.reports, shop.flaky], reverse=True)
    seen: list[int] = []
    url: str | None = "/jobs"
    pages = 0
    while url is not None:
        listing = page(client, url)
        seen += [int(t) for h, t in listing.links if h.startswith("/jobs/")]
        older = [h for h, t in listing.links if t == "Older »"]
        url = older[0] if older else None
        pages += 1
        if pages > 1:
            assert ("/jobs", "« Newest") in listing.links
    assert seen == live
    assert pages == 3


def test_job_page_shows_payload_headers_traceback_and_outcomes(
    client: FlaskClient, shop: Shop
) -> None:
    job = page(client, f"/jobs/{shop.flaky}")
    assert "order" in job.html
    assert "&#34;items&#34;: [\n    &#34;tea&#34;" in job.html  # indented JSON, escaped
    assert "39 bytes" in job.html
    for key, value in HEADERS.items():
        assert f"&#34;{key}&#34;: &#34;{value}&#34;" in job.html
    assert "Traceback (most recent call last)" in job.html
    assert f"ValueError: order {shop.flaky} failed: the warehouse is closed" in job.html
    assert 'id="log"' in job.html  # its failed outcome is logged
    hexed = page(client, f"/jobs/{shop.flaky}?view=hex")
    assert "7b 22 6f 72 64 65 72 22" in hexed.html  # {"order"
    # A binary payload is shown as hex, with its printable characters beside.
    binary = page(client, f"/jobs/{shop.emails[0]}")
    assert "00 01 62 69 6e 61 72 79 ff" in binary.html
    assert "..binary." in binary.html
    assert f"/jobs/{shop.emails[0]}?view=text" not in binary.html
    # A finished job: its outcomes, no payload.
    done = page(client, f"/jobs/{shop.ok[0]}")
    assert "has finished" in done.html
    assert "&#34;done&#34;" in done.html  # its JSON result
    missing = page(client, "/jobs/987654321", 404)
    assert "no job with id 987654321" in missing.html


def test_a_long_payload_is_truncated(client: FlaskClient, qm: QueueManager) -> None:
    producer = QueueManager(qm.driver, settings=qm.settings, check_entrypoints=False)
    [job_id] = producer.queries.enqueue("big", b"A" * 10_000)
    html = page(client, f"/jobs/{job_id}").html
    assert "10,000 bytes, the first 4,096 shown" in html
    assert "A" * 4096 in html
    assert "A" * 4097 not in html


def test_workers_page(client: FlaskClient, qm: QueueManager, runner: Callable[..., Runner]) -> None:
    assert "No worker running." in page(client, "/workers").html

    @qm.entrypoint("ok")
    def ok(job: object) -> None:
        pass

    started = datetime.now(timezone.utc)
    run = runner(qm, workers=3)
    assert qm.queries.wait_for(qm.queries.enqueue("ok", None), timeout=10)
    workers = page(client, "/workers")
    [row] = qm.queries.workers()
    assert row.started_at >= started.replace(microsecond=0)
    assert str(row.id)[:8] in workers.html
    assert f">{row.pid}<" in workers.html
    assert "/ 3" in workers.html  # busy / threads
    run.stop()
    assert "No worker running." in page(client, "/workers").html


def test_paused_page(client: FlaskClient, qm: QueueManager) -> None:
    assert "No entrypoint is paused." in page(client, "/paused").html
    qm.queries.pause("emails", reason="mail server down")
    paused = page(client, "/paused")
    assert ("/jobs?entrypoint=emails", "emails") in paused.links
    assert "mail server down" in paused.html
    overview = page(client, "/")
    assert "badge-paused" in overview.html


@dataclasses.dataclass(frozen=True)
class FakeSchedule:
    """The fields of a schedule that the page shows (as ``Queries.schedules()`` rows)."""

    name: str
    expression: str
    timezone: str
    next_tick: datetime
    last_tick: datetime | None = None
    last_job_id: int | None = None
    last_status: JobStatus | None = None
    paused: bool = False
    orphaned: bool = False


def test_schedules_page_only_where_the_queue_has_schedules(
    client: FlaskClient, qm: QueueManager
) -> None:
    if hasattr(Queries, "schedules"):  # this version has periodic jobs
        assert ("/schedules", "Schedules") in page(client, "/").links
        assert "No schedule." in page(client, "/schedules").html
    else:
        assert "Schedules" not in page(client, "/").html
        assert client.get("/schedules").status_code == 404
    # A queue whose schedules() answers: the page lists what it returns.
    queries = Queries(qm.driver, qm.settings)
    tick = datetime(2030, 1, 1, 3, 0, tzinfo=timezone.utc)
    rows = [
        FakeSchedule("nightly-report", "0 3 * * *", "Europe/Paris", tick),
        FakeSchedule(
            "hourly-sync",
            "0 * * * *",
            "UTC",
            tick,
            last_tick=tick - timedelta(hours=1),
            last_job_id=4242,
            last_status=JobStatus.FAILED,
            paused=True,
        ),
    ]
    vars(queries)["schedules"] = lambda: rows
    app = create_app(queries)
    app.testing = True
    other = app.test_client()
    overview = page(other, "/")
    assert ("/schedules", "Schedules") in overview.links
    schedules = page(other, "/schedules")
    assert "nightly-report" in schedules.html
    assert "0 3 * * *" in schedules.html
    assert "2030-01-01 03:00:00" in schedules.html
    assert "Europe/Paris" in schedules.html
    assert ("/jobs/4242", "4242") in schedules.links
    assert "badge-failed" in schedules.html
    assert "badge-paused" in schedules.html


def test_blueprint_mounted_behind_the_applications_auth(qm: QueueManager, shop: Shop) -> None:
    app = Flask("host")

    @app.before_request
    def auth() -> None:
        if request.headers.get("X-User") != "ops":
            abort(401)

    app.register_blueprint(create_blueprint(qm.queries), url_prefix="/queue")
    app.register_blueprint(
        create_blueprint(qm.queries, name="second", title="second queue"), url_prefix="/q2"
    )
    client = app.test_client()
    assert client.get("/queue/").status_code == 401
    assert client.get("/queue/api/overview.json").status_code == 401
    ops = {"X-User": "ops"}
    overview = client.get("/queue/", headers=ops)
    assert overview.status_code == 200
    html = overview.get_data(as_text=True)
    assert 'href="/queue/static/dashboard.css"' in html
    assert 'href="/queue/jobs?entrypoint=emails"' in html
    with client.get("/queue/static/dashboard.js", headers=ops) as script:
        assert script.status_code == 200
    assert client.get(f"/queue/jobs/{shop.flaky}", headers=ops).status_code == 200
    second = client.get("/q2/", headers=ops).get_data(as_text=True)
    assert "second queue" in second
    assert 'href="/q2/jobs"' in second


def test_page_numbers_of_a_large_count_have_separators(
    client: FlaskClient, qm: QueueManager
) -> None:
    producer = QueueManager(qm.driver, settings=qm.settings, check_entrypoints=False)
    producer.queries.enqueue(["bulk"] * 1500, [None] * 1500)
    assert page(client, "/").rows["bulk"]["queued"] == "1,500"


@pytest.mark.parametrize("url", ["/", "/jobs", "/workers", "/paused", "/static/dashboard.css"])
def test_pages_send_the_security_headers(client: FlaskClient, url: str) -> None:
    with client.get(url) as response:
        assert response.status_code == 200
    csp = response.headers["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert "unsafe-inline" not in csp
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert response.headers["X-Frame-Options"] == "DENY"


def test_page_is_a_clean_page(client: FlaskClient, shop: Shop) -> None:
    """No inline script or style (the CSP forbids them): the page works as served."""
    for url in ("/", "/jobs", f"/jobs/{shop.flaky}", "/workers", "/paused"):
        html = page(client, url).html
        assert "<script>" not in html
        assert " style=" not in html
        assert " onclick=" not in html
    assert isinstance(Page("<p>x</p>"), Page)
