"""Commands that read the queue: status, workers, jobs (and jobs show), queue-size, log.

Each takes ``--json`` for scripts: the same rows as the library's operator API returns them
(:mod:`pgqueue_sync.admin`), as JSON.
"""

from __future__ import annotations

from datetime import datetime, timezone

import click

from pgqueue_sync.admin import LISTABLE, MAX_PAGE
from pgqueue_sync.admin_models import JobDetail
from pgqueue_sync.models import JobStatus

from .context import QueueContext, console, json_option, print_json, print_table, with_queue

__all__ = ["jobs", "log", "queue_size", "seconds", "status", "workers"]


def seconds(value: float | None) -> str:
    """A duration for people: ``850 ms``, ``12.3 s``, ``4 min``, ``2.5 h``; ``-`` for none."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"


def when(value: datetime | None) -> str:
    return "-" if value is None else value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


@click.command()
@json_option
@with_queue()
def status(queue: QueueContext, as_json: bool) -> None:
    """Per entrypoint: jobs queued (due now), deferred, running, failed; outcomes and
    failures in the last minute; the oldest due job's wait; paused or not."""
    rows = queue.queries.status()
    if as_json:
        print_json(rows)
        return
    print_table(
        (
            "entrypoint",
            "queued",
            "deferred",
            "running",
            "failed",
            "done/min",
            "failed/min",
            "in/min",
            "oldest wait",
            "latency",
            "paused",
        ),
        [
            (
                r.entrypoint,
                r.queued,
                r.deferred,
                r.picked,
                r.failed,
                r.done_last_minute,
                r.failed_last_minute,
                r.enqueued_last_minute,
                seconds(r.oldest_waiting_seconds),
                seconds(r.pickup_latency_seconds),
                "paused" if r.paused else "",
            )
            for r in rows
        ],
        numeric=("queued", "deferred", "running", "failed", "done/min", "failed/min", "in/min"),
        empty="no job, no worker",
    )


@click.command()
@json_option
@with_queue()
def workers(queue: QueueContext, as_json: bool) -> None:
    """Workers that are running, and those lost (no heartbeat for their retry_timer)."""
    rows = queue.queries.workers()
    if as_json:
        print_json(rows)
        return
    print_table(
        ("worker", "host", "pid", "state", "started", "heartbeat", "busy", "done", "entrypoints"),
        [
            (
                str(w.id)[:8],
                w.host,
                w.pid,
                "lost" if w.lost else "running",
                when(w.started_at),
                f"{seconds(w.heartbeat_age_seconds)} ago",
                f"{w.busy}/{w.threads}",
                w.jobs_done,
                ", ".join(w.entrypoints),
            )
            for w in rows
        ],
        numeric=("pid", "done"),
        empty="no worker is registered",
    )


@click.command("queue-size")
@json_option
@with_queue()
def queue_size(queue: QueueContext, as_json: bool) -> None:
    """Jobs per entrypoint and state: queued (due now), deferred, picked, failed."""
    rows = [
        {"entrypoint": r.entrypoint, "status": name, "count": count}
        for r in queue.queries.status()
        for name, count in (
            ("queued", r.queued),
            ("deferred", r.deferred),
            ("picked", r.picked),
            ("failed", r.failed),
        )
        if count
    ]
    if as_json:
        print_json(rows)
        return
    print_table(
        ("entrypoint", "status", "count"),
        [(r["entrypoint"], r["status"], r["count"]) for r in rows],
        numeric=("count",),
        empty="no job in the queue",
    )


@click.command()
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=20,
    show_default=True,
    help="How many outcomes, newest first.",
)
@json_option
@with_queue()
def log(queue: QueueContext, limit: int, as_json: bool) -> None:
    """The most recent job outcomes."""
    entries = queue.queries.log(limit=limit)
    if as_json:
        print_json(entries)
        return
    print_table(
        ("job", "entrypoint", "status", "attempts", "duration", "at"),
        [
            (
                e.job_id,
                e.entrypoint,
                e.status,
                e.attempts,
                seconds(None if e.duration is None else e.duration.total_seconds()),
                when(e.created),
            )
            for e in entries
        ],
        numeric=("job", "attempts"),
        empty="no outcome",
    )


@click.group(invoke_without_command=True)
@click.option(
    "--status",
    "status_",
    type=click.Choice(LISTABLE),
    help="Only jobs in this state: queued, picked, failed (in the queue), or successful, "
    "exception, canceled (outcomes in the log). Default: every job in the queue.",
)
@click.option("--entrypoint", help="Only jobs of this entrypoint.")
@click.option(
    "--limit",
    type=click.IntRange(min=1, max=MAX_PAGE),
    default=50,
    show_default=True,
    help="How many jobs, newest first.",
)
@click.option(
    "--cursor",
    type=click.IntRange(min=1),
    help="Start after this row: the cursor printed under the previous page.",
)
@json_option
@with_queue()
def jobs(
    queue: QueueContext,
    status_: str | None,
    entrypoint: str | None,
    limit: int,
    cursor: int | None,
    as_json: bool,
) -> None:
    """List jobs, newest first (`jobs show ID`: one job in full)."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    page = queue.queries.list_jobs(
        status=status_, entrypoint=entrypoint, limit=limit, cursor=cursor
    )
    if as_json:
        print_json(page)
        return
    print_table(
        (
            "job",
            "entrypoint",
            "status",
            "attempts",
            "priority",
            "enqueued",
            "due",
            "updated",
            "error",
        ),
        [
            (
                j.id,
                j.entrypoint,
                j.status,
                j.attempts,
                j.priority,
                when(j.enqueued_at),
                when(j.due_at),
                when(j.updated_at),
                (j.error or "")[:60],
            )
            for j in page.jobs
        ],
        numeric=("job", "attempts", "priority"),
        empty="no job",
    )
    if page.next_cursor is not None:
        click.echo(f"more: --cursor {page.next_cursor}")


@jobs.command("show")
@click.argument("job_id", metavar="ID", type=click.IntRange(min=1))
@json_option
@with_queue()
def show(queue: QueueContext, job_id: int, as_json: bool) -> None:
    """One job in full: every field, headers, attempts, the last traceback, its log rows."""
    detail = queue.queries.job_detail(job_id)
    if as_json:
        print_json(detail)
        return
    _print_detail(detail)


def _print_detail(detail: JobDetail) -> None:
    out = console()
    job = detail.job
    fields: list[tuple[str, object]] = [
        ("id", detail.id),
        ("entrypoint", detail.entrypoint),
        ("status", detail.status),
    ]
    if job is not None:
        payload = job.payload
        fields += [
            ("priority", job.priority),
            ("attempts", job.attempts),
            ("enqueued", when(job.created)),
            ("due", when(job.execute_after)),
            ("updated", when(job.updated)),
            ("heartbeat", when(job.heartbeat) if job.status is JobStatus.PICKED else "-"),
            ("worker", job.worker_id or "-"),
            ("dedupe key", job.dedupe_key or "-"),
            ("cancel requested", "yes" if job.cancel_requested else "no"),
            ("rescued / lost", f"{job.rescued} / {job.lost}"),
            ("headers", dict(job.headers) if job.headers else "-"),
            ("payload", "-" if payload is None else f"{len(payload)} bytes: {payload[:64]!r}"),
        ]
    else:
        fields.append(("in the queue", "no (finished: see its outcomes)"))
    width = max(len(name) for name, _ in fields)
    for name, value in fields:
        out.print(f"{name:<{width}}  {value}", markup=False)
    if detail.log:
        out.print()
        print_table(
            ("outcome", "status", "attempts", "duration", "worker", "at"),
            [
                (
                    e.id,
                    e.status,
                    e.attempts,
                    seconds(None if e.duration is None else e.duration.total_seconds()),
                    str(e.worker_id)[:8] if e.worker_id else "-",
                    when(e.created),
                )
                for e in detail.log
            ],
            title="outcomes",
            numeric=("outcome", "attempts"),
        )
    text = detail.traceback
    if text:
        out.print("last traceback:", markup=False)
        out.print(text.rstrip(), markup=False)
