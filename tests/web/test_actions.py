"""The dashboard's actions: only when enabled, only by POST, only with the session's CSRF
token; each does what it says on the real queue."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from flask import Flask
from flask.testing import FlaskClient

from pgqueue_sync import ConfigurationError, JobStatus, QueueManager
from pgqueue_sync.web import create_blueprint

from .conftest import page
from .shop import Shop


def status_of(shop: Shop, job_id: int) -> JobStatus:
    return shop.qm.queries.job_detail(job_id).status


@pytest.fixture
def actions(make_client: Callable[..., FlaskClient]) -> FlaskClient:
    return make_client(actions=True)


def test_a_read_only_dashboard_refuses_every_action(client: FlaskClient, shop: Shop) -> None:
    job = page(client, f"/jobs/{shop.flaky}")
    assert job.forms == []
    assert "Requeue" not in job.html
    for url, form in (
        ("/actions/requeue", {"job_id": str(shop.flaky)}),
        ("/actions/cancel", {"job_id": str(shop.emails[0])}),
        ("/actions/pause", {"entrypoint": "emails"}),
    ):
        response = client.post(url, data=form)
        assert response.status_code == 403
        assert "actions are disabled" in response.get_data(as_text=True)
    assert status_of(shop, shop.flaky) == JobStatus.FAILED
    assert status_of(shop, shop.emails[0]) == JobStatus.QUEUED
    assert shop.qm.queries.paused() == []


def test_requeue_needs_the_sessions_csrf_token(actions: FlaskClient, shop: Shop) -> None:
    job = page(actions, f"/jobs/{shop.flaky}")
    assert "/actions/requeue" in job.forms
    assert "/actions/cancel" in job.forms
    token = job.csrf()
    form = {"job_id": str(shop.flaky), "next": f"/jobs/{shop.flaky}"}
    # No token, a wrong one, a token of another session, or a GET: refused, nothing done.
    assert actions.post("/actions/requeue", data=form).status_code == 403
    wrong = {**form, "csrf_token": token[:-2] + "xx"}
    assert actions.post("/actions/requeue", data=wrong).status_code == 403
    other = actions.application.test_client()
    page(other, f"/jobs/{shop.flaky}")
    assert other.post("/actions/requeue", data={**form, "csrf_token": token}).status_code == 403
    assert actions.get("/actions/requeue").status_code == 405
    assert status_of(shop, shop.flaky) == JobStatus.FAILED
    # With the token: done, and back to the job's page with a message.
    done = actions.post("/actions/requeue", data={**form, "csrf_token": token})
    assert done.status_code == 303
    assert done.headers["Location"] == f"/jobs/{shop.flaky}"
    assert status_of(shop, shop.flaky) == JobStatus.QUEUED
    after = page(actions, f"/jobs/{shop.flaky}")
    assert f"job {shop.flaky} requeued" in after.html
    # The header works as the form field does (for scripts of the page).
    again = actions.post("/actions/requeue", data=form, headers={"X-CSRF-Token": token})
    assert again.status_code == 303
    assert f"job {shop.flaky} is not failed" in page(actions, "/").html


def test_cancel_pause_resume_and_requeue_an_entrypoint(actions: FlaskClient, shop: Shop) -> None:
    token = page(actions, "/").csrf()

    def post(url: str, **form: str) -> None:
        response = actions.post(url, data={**form, "csrf_token": token})
        assert response.status_code == 303, response.get_data(as_text=True)

    post("/actions/cancel", job_id=str(shop.emails[0]))
    assert status_of(shop, shop.emails[0]) == JobStatus.CANCELED
    post("/actions/pause", entrypoint="reports", reason="<b>quarter end</b>")
    [paused] = shop.qm.queries.paused()
    assert (paused.entrypoint, paused.reason) == ("reports", "<b>quarter end</b>")
    html = page(actions, "/paused").html
    assert "&lt;b&gt;quarter end&lt;/b&gt;" in html
    assert "/actions/resume" in html
    post("/actions/resume", entrypoint="reports")
    assert shop.qm.queries.paused() == []
    post("/actions/requeue", entrypoint="flaky")
    assert status_of(shop, shop.flaky) == JobStatus.QUEUED
    assert "1 failed job(s) of flaky requeued" in page(actions, "/").html
    post("/actions/cancel", job_id="987654321")
    assert "no job 987654321" in page(actions, "/").html


def test_bad_action_input_is_a_clear_error(actions: FlaskClient, shop: Shop) -> None:
    token = page(actions, "/").csrf()
    for url, form, message in (
        ("/actions/cancel", {"job_id": "12; DROP"}, "job_id must be a job"),
        ("/actions/pause", {"entrypoint": ""}, "an entrypoint is required"),
        ("/actions/pause", {"entrypoint": "no spaces"}, "invalid entrypoint name"),
    ):
        response = actions.post(url, data={**form, "csrf_token": token})
        assert response.status_code == 400
        assert message in response.get_data(as_text=True)
    assert shop.qm.queries.paused() == []


@pytest.mark.parametrize(
    "target", ["//evil.example/x", "https://evil.example/", "/\\evil.example", "jobs"]
)
def test_an_action_goes_back_only_to_this_site(
    actions: FlaskClient, shop: Shop, target: str
) -> None:
    token = page(actions, "/").csrf()
    response = actions.post(
        "/actions/pause", data={"entrypoint": "emails", "next": target, "csrf_token": token}
    )
    assert response.status_code == 303
    assert response.headers["Location"] == "/"


def test_actions_in_an_application_without_a_secret_key_say_what_is_missing(
    qm: QueueManager, shop: Shop
) -> None:
    app = Flask("host")
    app.testing = True
    app.register_blueprint(create_blueprint(qm.queries, actions=True))
    with pytest.raises(ConfigurationError, match="secret_key"):
        app.test_client().get("/")
    app.secret_key = "a key of the host application"
    client = app.test_client()
    assert page(client, "/").csrf()
