"""``pgq-sync schedules``: list the periodic jobs' schedules; pause, resume, run or remove one."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

import click

from pgqueue_sync.models import ScheduleInfo

from .context import QueueContext, print_table, with_queue

__all__ = ["schedules"]


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    return value


def schedule_json(info: ScheduleInfo) -> dict[str, Any]:
    """A schedule as JSON: its fields, times in ISO 8601, the payload in hex."""
    fields = {k: _jsonable(v) for k, v in dataclasses.asdict(info).items()}
    fields["last_status"] = None if info.last_status is None else str(info.last_status)
    return fields


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.isoformat(timespec="seconds")


def _state(info: ScheduleInfo) -> str:
    states = [s for s, on in (("paused", info.paused), ("orphaned", info.orphaned)) if on]
    return ", ".join(states) or "active"


def _echo_json(value: object) -> None:
    click.echo(json.dumps(value, indent=2))


json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")


@click.group(invoke_without_command=True)
@json_option
@with_queue()
def schedules(queue: QueueContext, as_json: bool) -> None:
    """The schedules of periodic jobs: name, expression, time zone, next tick, last job and
    its status. A schedule that no running worker declares any more is shown as orphaned."""
    if click.get_current_context().invoked_subcommand is not None:
        return
    found = queue.queries.schedules()
    if as_json:
        _echo_json([schedule_json(info) for info in found])
        return
    print_table(
        (
            "name",
            "expression",
            "timezone",
            "catch_up",
            "next tick",
            "last tick",
            "last job",
            "status",
            "state",
        ),
        [
            (
                info.name,
                info.expression,
                info.timezone,
                info.catch_up,
                _when(info.next_tick),
                _when(info.last_tick),
                "-" if info.last_job_id is None else info.last_job_id,
                "-" if info.last_status is None else info.last_status,
                _state(info),
            )
            for info in found
        ],
    )


@schedules.command()
@click.argument("name")
@json_option
@with_queue()
def pause(queue: QueueContext, name: str, as_json: bool) -> None:
    """Stop enqueueing NAME's ticks (those that fall while it is paused are skipped)."""
    queue.queries.pause_schedule(name)
    if as_json:
        _echo_json({"name": name, "paused": True})
    else:
        click.echo(f"schedule {name!r} paused")


@schedules.command()
@click.argument("name")
@json_option
@with_queue()
def resume(queue: QueueContext, name: str, as_json: bool) -> None:
    """Enqueue NAME's ticks again, from the first one after now."""
    first = queue.queries.resume_schedule(name)
    if as_json:
        _echo_json({"name": name, "paused": False, "next_tick": first.isoformat()})
    else:
        click.echo(f"schedule {name!r} resumed: next tick {_when(first)}")


@schedules.command()
@click.argument("name")
@json_option
@with_queue()
def run(queue: QueueContext, name: str, as_json: bool) -> None:
    """Enqueue one job of NAME now, besides its ticks."""
    job_id = queue.queries.run_schedule(name)
    if as_json:
        _echo_json({"name": name, "job_id": job_id})
    else:
        click.echo(f"schedule {name!r}: job {job_id} enqueued")


@schedules.command()
@click.argument("name")
@json_option
@with_queue()
def remove(queue: QueueContext, name: str, as_json: bool) -> None:
    """Delete NAME's row (an orphaned schedule; a running worker that still declares it
    creates it again)."""
    queue.queries.remove_schedule(name)
    if as_json:
        _echo_json({"name": name, "removed": True})
    else:
        click.echo(f"schedule {name!r} removed")
