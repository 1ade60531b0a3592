"""The dashboard's pages, as a Flask blueprint to mount in an application (behind its auth).

    from pgqueue_sync.web import create_blueprint

    app.register_blueprint(create_blueprint(qm.queries), url_prefix="/queue")

Server-rendered pages: overview (per entrypoint backlog, rates, latency, failures, and the
last hour's charts, drawn by a small script from ``api/overview.json``), jobs (filtered by
status and entrypoint, paged by keyset), a job, workers, paused entrypoints, and schedules
where the queue has them. Every read is one of the operator API's
(``pgqueue_sync.admin``). Actions (requeue, cancel, pause, resume) exist only with
``actions=True``: see ``pgqueue_sync.web.actions``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any

from flask import Blueprint, abort, jsonify, render_template, request
from flask.typing import ResponseReturnValue

from pgqueue_sync.admin import LISTABLE, MAX_RATE_MINUTES
from pgqueue_sync.admin_models import jsonable
from pgqueue_sync.errors import (
    ConfigurationError,
    ConnectError,
    ConnectionLostError,
    JobNotFoundError,
    PgQueueError,
)
from pgqueue_sync.queries import Queries

from . import present
from .actions import add_actions
from .security import CSRF_FIELD, MissingSecretKeyError, csrf_token, secure_headers

__all__ = ["DashboardOptions", "create_blueprint"]


@dataclasses.dataclass(frozen=True)
class DashboardOptions:
    """How a dashboard behaves.

    Attributes:
        actions: whether the pages offer requeue, cancel, pause and resume (off unless
            asked for).
        refresh_seconds: how often the overview refreshes, in seconds.
        page_size: how many jobs a listing page shows.
        title: the title of its pages.
    """

    actions: bool = False
    refresh_seconds: float = 10.0
    page_size: int = 50
    title: str = "pgqueue-sync"

    def __post_init__(self) -> None:
        if not isinstance(self.actions, bool):
            raise ConfigurationError("actions must be True or False")
        if not 1 <= self.refresh_seconds <= 3600:
            raise ConfigurationError("refresh_seconds must be from 1 to 3600")
        if isinstance(self.page_size, bool) or not 1 <= self.page_size <= 1000:
            raise ConfigurationError("page_size must be from 1 to 1000")


def has_schedules(queries: Queries) -> bool:
    """Whether this version of the queue has periodic jobs (``Queries.schedules``)."""
    return callable(getattr(queries, "schedules", None))


def create_blueprint(
    queries: Queries,
    *,
    actions: bool = False,
    refresh_seconds: float = 10.0,
    page_size: int = 50,
    title: str = "pgqueue-sync",
    name: str = "pgqueue_sync",
) -> Blueprint:
    """The dashboard of the queue ``queries`` works on, as a blueprint named ``name`` (two
    queues, two names). Mount it behind the application's own authentication: it has none.
    With ``actions=True`` the application needs a ``secret_key`` (CSRF tokens live in its
    session)."""
    options = DashboardOptions(actions, float(refresh_seconds), page_size, title)
    bp = Blueprint(
        name,
        __name__,
        template_folder="templates",
        static_folder="static",
        static_url_path="/static",
    )
    bp.after_request(secure_headers)

    @bp.context_processor
    def context() -> dict[str, Any]:
        return {
            "options": options,
            "show_schedules": has_schedules(queries),
            "csrf_field": CSRF_FIELD,
            "csrf_token": csrf_token if options.actions else None,
            "now": datetime.now(timezone.utc),
            "p": present,
            "here": request.full_path.rstrip("?"),
        }

    def page(template: str, code: int = 200, **values: Any) -> ResponseReturnValue:
        return render_template(f"pgqueue_sync/{template}.html", **values), code

    @bp.errorhandler(PgQueueError)
    def queue_error(exc: PgQueueError) -> ResponseReturnValue:
        if isinstance(exc, MissingSecretKeyError):
            raise exc  # the server's set-up: an internal error, logged by Flask
        if isinstance(exc, JobNotFoundError):
            return page("error", 404, title="not found", message=str(exc))
        if isinstance(exc, (ConnectError, ConnectionLostError)):
            return page("error", 503, title="database unreachable", message=str(exc))
        if isinstance(exc, ConfigurationError):
            return page("error", 400, title="bad request", message=str(exc))
        return page("error", 500, title="error", message=str(exc))

    @bp.get("/")
    def overview() -> ResponseReturnValue:
        rows = queries.status()
        workers = queries.workers()
        return page(
            "overview",
            rows=rows,
            totals=_totals(rows),
            running=sum(not w.lost for w in workers),
            lost=sum(w.lost for w in workers),
        )

    @bp.get("/api/overview.json")
    def api_overview() -> ResponseReturnValue:
        minutes = _int_arg("minutes", 60)
        if minutes is None or not 1 <= minutes <= MAX_RATE_MINUTES:
            abort(400, description=f"minutes must be an int from 1 to {MAX_RATE_MINUTES}")
        entrypoint = request.args.get("entrypoint") or None
        workers = queries.workers()
        return jsonify(
            now=jsonable(datetime.now(timezone.utc)),
            entrypoints=jsonable(queries.status()),
            workers={
                "running": sum(not w.lost for w in workers),
                "lost": sum(w.lost for w in workers),
            },
            rates=jsonable(queries.rates(minutes, entrypoint=entrypoint)),
        )

    @bp.get("/jobs")
    def jobs() -> ResponseReturnValue:
        status = request.args.get("status") or None
        entrypoint = (request.args.get("entrypoint") or "").strip() or None
        cursor = _int_arg("cursor", None)
        listing = queries.list_jobs(
            status=status, entrypoint=entrypoint, limit=options.page_size, cursor=cursor
        )
        return page(
            "jobs",
            listing=listing,
            status=status,
            entrypoint=entrypoint,
            cursor=cursor,
            statuses=LISTABLE,
        )

    @bp.get("/jobs/<int:job_id>")
    def job(job_id: int) -> ResponseReturnValue:
        detail = queries.job_detail(job_id)
        view = request.args.get("view")
        # A finished job's payload is not kept (its log rows have its results).
        payload = present.preview(detail.job.payload) if detail.job is not None else None
        if view not in ("text", "hex"):
            view = "text" if payload is None or payload.text is not None else "hex"
        headers = detail.job.headers if detail.job is not None else None
        if headers is None and detail.log:
            headers = detail.log[-1].headers
        return page(
            "job",
            detail=detail,
            payload=payload,
            view=view,
            headers=present.headers_json(headers),
            results=[present.preview(entry.result) for entry in detail.log],
        )

    @bp.get("/workers")
    def workers() -> ResponseReturnValue:
        return page("workers", workers=queries.workers())

    @bp.get("/paused")
    def paused() -> ResponseReturnValue:
        return page("paused", paused=queries.paused())

    @bp.get("/schedules")
    def schedules() -> ResponseReturnValue:
        read: Callable[[], list[Any]] | None = getattr(queries, "schedules", None)
        if read is None or not callable(read):
            abort(404, description="this version of pgqueue-sync has no schedules")
        return page("schedules", schedules=read())

    add_actions(bp, queries if options.actions else None)
    return bp


def _int_arg(name: str, default: int | None) -> int | None:
    """The query argument ``name`` as an int (``default`` when absent; 400 when not one)."""
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        abort(400, description=f"{name} must be an integer")


def _totals(rows: list[Any]) -> dict[str, Any]:
    fields = (
        "queued",
        "deferred",
        "picked",
        "failed",
        "enqueued_last_minute",
        "done_last_minute",
        "failed_last_minute",
    )
    return {f: sum(getattr(r, f) for r in rows) for f in fields}
