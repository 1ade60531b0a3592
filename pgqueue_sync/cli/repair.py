"""Commands that change the queue on purpose: requeue, cancel, pause, resume, purge.

requeue and cancel say what changed and what was not found (exit code 1 when an id is
unknown); purge asks before deleting, like uninstall, unless ``--yes``.
"""

from __future__ import annotations

from collections.abc import Sequence

import click

from pgqueue_sync.admin import PURGEABLE

from .context import CliRefusal, QueueContext, confirm, json_option, print_json, with_queue

__all__ = ["cancel", "clear", "pause", "purge", "requeue", "resume"]


def _ids(ids: Sequence[int]) -> str:
    shown = ", ".join(map(str, ids[:20]))
    return shown + (f" ... ({len(ids)} in all)" if len(ids) > 20 else "")


def _report(lines: Sequence[tuple[str, Sequence[int]]]) -> None:
    for text, ids in lines:
        if ids:
            click.echo(f"{text} ({len(ids)}): {_ids(ids)}")


@click.command()
@click.argument("job_ids", metavar="[ID]...", nargs=-1, type=click.IntRange(min=1))
@click.option("--failed", "all_failed", is_flag=True, help="Requeue every failed job.")
@click.option("--entrypoint", help="With --failed: only the failed jobs of this entrypoint.")
@json_option
@with_queue()
def requeue(
    queue: QueueContext,
    job_ids: tuple[int, ...],
    all_failed: bool,
    entrypoint: str | None,
    as_json: bool,
) -> None:
    """Put failed jobs back in the queue, with a fresh count of attempts: the given ids, or
    every failed job with --failed. Exit code 1 if an id is not found."""
    if bool(job_ids) == all_failed:
        raise CliRefusal("give job ids, or --failed (not both)")
    if entrypoint is not None and not all_failed:
        raise CliRefusal("--entrypoint goes with --failed")
    if all_failed:
        result = queue.queries.requeue_failed(entrypoint=entrypoint)
    else:
        result = queue.queries.requeue_failed(job_ids)
    if as_json:
        print_json(result)
    else:
        if not result.requeued:
            click.echo("requeued nothing")
        _report(
            [
                ("requeued", result.requeued),
                ("not requeued, still queued or running", result.live),
                ("not requeued, finished (only in the log: enqueue them again)", result.finished),
                ("not found", result.unknown),
            ]
        )
    if result.unknown:
        click.get_current_context().exit(1)


@click.command()
@click.argument("job_ids", metavar="ID...", nargs=-1, required=True, type=click.IntRange(min=1))
@json_option
@with_queue()
def cancel(queue: QueueContext, job_ids: tuple[int, ...], as_json: bool) -> None:
    """Cancel jobs: queued and failed ones at once; running ones are asked to stop (their
    handler sees ctx.cancelled). Exit code 1 if an id is not found."""
    result = queue.queries.cancel(job_ids)
    if as_json:
        print_json(result)
    else:
        _report(
            [
                ("canceled", result.canceled),
                ("running, asked to stop", result.requested),
                ("already finished", result.finished),
                ("not found", result.unknown),
            ]
        )
    if result.unknown:
        click.get_current_context().exit(1)


@click.command()
@click.argument("entrypoints", metavar="ENTRYPOINT...", nargs=-1, required=True)
@click.option("--reason", help="Why, shown by `pgq-sync status --json` and the dashboard.")
@with_queue()
def pause(queue: QueueContext, entrypoints: tuple[str, ...], reason: str | None) -> None:
    """Stop claiming jobs of these entrypoints, on every worker, until `resume` (jobs are
    still enqueued; running ones finish; buffered ones go back to the queue)."""
    paused = queue.queries.pause(entrypoints, reason=reason)
    already = sorted(set(entrypoints) - set(paused))
    if paused:
        click.echo(f"paused: {', '.join(paused)}")
    if already:
        click.echo(f"already paused: {', '.join(already)}")


@click.command()
@click.argument("entrypoints", metavar="ENTRYPOINT...", nargs=-1, required=True)
@with_queue()
def resume(queue: QueueContext, entrypoints: tuple[str, ...]) -> None:
    """Let workers claim jobs of these paused entrypoints again."""
    resumed = queue.queries.resume(entrypoints)
    others = sorted(set(entrypoints) - set(resumed))
    if resumed:
        click.echo(f"resumed: {', '.join(resumed)}")
    if others:
        click.echo(f"not paused: {', '.join(others)}")


@click.command()
@click.option(
    "--status",
    "statuses",
    type=click.Choice(PURGEABLE),
    multiple=True,
    help="Delete jobs in this state (repeatable; default: queued, deferred ones included). "
    "Running jobs are never deleted.",
)
@click.option("--entrypoint", help="Only jobs of this entrypoint.")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@with_queue()
def purge(
    queue: QueueContext, statuses: tuple[str, ...], entrypoint: str | None, yes: bool
) -> None:
    """Delete jobs without running them: queued ones (by default) or failed ones."""
    chosen = sorted(set(statuses or ("queued",)))
    rows = [r for r in queue.queries.status() if entrypoint in (None, r.entrypoint)]
    count = sum((r.queued + r.deferred if "queued" in chosen else 0) for r in rows) + sum(
        (r.failed if "failed" in chosen else 0) for r in rows
    )
    of = f" of entrypoint {entrypoint!r}" if entrypoint else ""
    what = " and ".join(chosen)
    if not count:
        click.echo(f"nothing to purge: no {what} job{of} in {queue.where}")
        return
    confirm(
        f"Delete {count} {what} job(s){of} in {queue.where} of {queue.database}?",
        yes,
    )
    deleted = queue.queries.purge(chosen, entrypoint=entrypoint)
    click.echo(f"deleted {deleted} {what} job(s){of}")


@click.command(hidden=True, deprecated=True)
@click.option("--entrypoint", "entrypoints", multiple=True, help="Only jobs of this entrypoint.")
@with_queue()
def clear(queue: QueueContext, entrypoints: tuple[str, ...]) -> None:
    """Delete queued jobs: use `purge`."""
    count = queue.queries.clear_queue(list(entrypoints) if entrypoints else None)
    click.echo(f"deleted {count} queued job(s)")
