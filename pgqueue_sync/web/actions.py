"""The dashboard's actions: requeue failed jobs, cancel a job, pause and resume entrypoints.

Each is a POST (a form, so it works without a script) checked against the session's CSRF
token, answered with a redirect back to the page it came from and a one-line message
(post/redirect/get). Without ``actions=True`` the routes exist and refuse (403), so that a
read-only dashboard says why instead of "not found".
"""

from __future__ import annotations

from flask import Blueprint, abort, flash, redirect, request, url_for
from flask.typing import ResponseReturnValue

from pgqueue_sync.errors import ConfigurationError
from pgqueue_sync.queries import Queries

from .security import check_csrf, safe_next

__all__ = ["FLASH_ERROR", "FLASH_OK", "add_actions"]

# Categories of the dashboard's messages (namespaced: the application may flash its own).
FLASH_OK = "pgqueue_sync.ok"
FLASH_ERROR = "pgqueue_sync.error"


def _job_id() -> int:
    value = request.form.get("job_id", "")
    if not value.isdigit():
        raise ConfigurationError("job_id must be a job's id (an integer)")
    return int(value)


def _entrypoint() -> str:
    value = request.form.get("entrypoint", "").strip()
    if not value:
        raise ConfigurationError("an entrypoint is required")
    return value


def add_actions(bp: Blueprint, queries: Queries | None) -> None:
    """Add the action routes to ``bp``: working on ``queries``, or refusing (None)."""

    def back() -> ResponseReturnValue:
        return redirect(safe_next(request.form.get("next"), url_for(".overview")), code=303)

    def guard() -> Queries:
        if queries is None:
            abort(403, description="actions are disabled on this dashboard")
        check_csrf()
        return queries

    @bp.post("/actions/requeue")
    def requeue() -> ResponseReturnValue:
        q = guard()
        if request.form.get("job_id"):
            job_id = _job_id()
            result = q.requeue_failed([job_id])
            if result.requeued:
                flash(f"job {job_id} requeued", FLASH_OK)
            elif result.live:
                flash(f"job {job_id} is not failed (queued or running): not requeued", FLASH_ERROR)
            elif result.finished:
                flash(f"job {job_id} has finished: enqueue it again instead", FLASH_ERROR)
            else:
                flash(f"no job {job_id}", FLASH_ERROR)
        else:
            entrypoint = _entrypoint()
            result = q.requeue_failed(entrypoint=entrypoint)
            flash(f"{len(result.requeued)} failed job(s) of {entrypoint} requeued", FLASH_OK)
        return back()

    @bp.post("/actions/cancel")
    def cancel() -> ResponseReturnValue:
        q = guard()
        job_id = _job_id()
        result = q.cancel([job_id])
        if result.canceled:
            flash(f"job {job_id} canceled", FLASH_OK)
        elif result.requested:
            flash(f"job {job_id} is running: asked to stop", FLASH_OK)
        elif result.finished:
            flash(f"job {job_id} had finished: nothing to cancel", FLASH_ERROR)
        else:
            flash(f"no job {job_id}", FLASH_ERROR)
        return back()

    @bp.post("/actions/pause")
    def pause() -> ResponseReturnValue:
        q = guard()
        entrypoint = _entrypoint()
        reason = request.form.get("reason", "").strip() or None
        if q.pause(entrypoint, reason=reason):
            flash(f"{entrypoint} paused", FLASH_OK)
        else:
            flash(f"{entrypoint} was paused already", FLASH_OK)
        return back()

    @bp.post("/actions/resume")
    def resume() -> ResponseReturnValue:
        q = guard()
        entrypoint = _entrypoint()
        if q.resume(entrypoint):
            flash(f"{entrypoint} resumed", FLASH_OK)
        else:
            flash(f"{entrypoint} was not paused", FLASH_OK)
        return back()
