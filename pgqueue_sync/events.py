"""The events sent on the queue's NOTIFY channel: one type each, one encode, one decode.

An event is only ever a hint. NOTIFY needs no privilege: any role that can connect can send
any of these, so a worker acts on the queue's tables, never on what an event claims. A
wake-up leads to a claim (which reads the table); a cancellation to a read of
``cancel_requested`` for the jobs the worker holds; ``done`` to a look at the log; a pause
or resume to a read of the paused entrypoints.

The database sends some of them itself (the insert trigger, the completion, cancel, release,
requeue, pause and resume statements): :data:`SQL_LITERALS` gives the SQL builder their
fixed payloads and type names, so the wire format is written here alone.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Sequence
from typing import Any, ClassVar

__all__ = [
    "SQL_LITERALS",
    "Cancel",
    "Done",
    "Event",
    "Insert",
    "Pause",
    "Probe",
    "Requeue",
    "Resume",
    "Unknown",
    "concerns",
    "decode",
    "encode",
]


@dataclasses.dataclass(frozen=True)
class Insert:
    """Jobs were enqueued (one per INSERT or COPY statement, sent by a trigger)."""

    TYPE: ClassVar[str] = "insert"


@dataclasses.dataclass(frozen=True)
class Requeue:
    """Jobs went back to ``queued``: retried, released, requeued."""

    TYPE: ClassVar[str] = "requeue"


@dataclasses.dataclass(frozen=True)
class Done:
    """Outcomes were written. ``ids`` and ``entrypoints`` are None when there were too many
    to list: a listener then treats every job (or every entrypoint) as concerned."""

    TYPE: ClassVar[str] = "done"
    ids: tuple[int, ...] | None = None
    entrypoints: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Cancel:
    """Cancellation was requested for these running jobs."""

    TYPE: ClassVar[str] = "cancel"
    ids: tuple[int, ...] = ()


@dataclasses.dataclass(frozen=True)
class Pause:
    """These entrypoints were paused (``entrypoints`` None: unlisted, any may be)."""

    TYPE: ClassVar[str] = "pause"
    entrypoints: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Resume:
    """These entrypoints were resumed (``entrypoints`` None: unlisted, any may be)."""

    TYPE: ClassVar[str] = "resume"
    entrypoints: tuple[str, ...] | None = None


@dataclasses.dataclass(frozen=True)
class Probe:
    """A worker's message to its own listener, proving that its LISTEN still delivers."""

    TYPE: ClassVar[str] = "probe"
    worker: str = ""


@dataclasses.dataclass(frozen=True)
class Unknown:
    """A payload this version does not understand (another version's event, or garbage)."""

    TYPE: ClassVar[str] = ""
    payload: str = ""


Event = Insert | Requeue | Done | Cancel | Pause | Resume | Probe | Unknown

# What the SQL builder writes into statements: the payloads the database sends as they are,
# and the type names of the events it builds with json_build_object.
SQL_LITERALS: dict[str, str] = {
    "insert_event": json.dumps({"type": Insert.TYPE}),
    "requeue_event": json.dumps({"type": Requeue.TYPE}),
    "done_type": Done.TYPE,
    "cancel_type": Cancel.TYPE,
    "pause_type": Pause.TYPE,
    "resume_type": Resume.TYPE,
}


def encode(event: Event) -> str:
    """The NOTIFY payload of ``event``."""
    if isinstance(event, Unknown):
        return event.payload
    body: dict[str, Any] = {"type": event.TYPE}
    if isinstance(event, Done):
        body["ids"] = None if event.ids is None else list(event.ids)
        body["entrypoints"] = None if event.entrypoints is None else list(event.entrypoints)
    elif isinstance(event, Cancel):
        body["ids"] = list(event.ids)
    elif isinstance(event, (Pause, Resume)):
        body["entrypoints"] = None if event.entrypoints is None else list(event.entrypoints)
    elif isinstance(event, Probe):
        body["worker"] = event.worker
    return json.dumps(body)


def _ints(value: object) -> tuple[int, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if type(v) is int)


def _strings(value: object) -> tuple[str, ...] | None:
    if not isinstance(value, list):
        return None
    return tuple(v for v in value if isinstance(v, str))


def decode(payload: str) -> Event:
    """The event a NOTIFY payload carries; never raises (garbage is :class:`Unknown`).

    Fields of the wrong type are dropped rather than trusted: a listener acts on the
    table, so a malformed event can at most cost a query.
    """
    try:
        body = json.loads(payload) if payload else None
    except ValueError:
        body = None
    if not isinstance(body, dict):
        return Unknown(payload)
    read = _READERS.get(body.get("type"))  # type: ignore[arg-type]
    return Unknown(payload) if read is None else read(body)


def _probe(body: dict[str, Any]) -> Probe:
    worker = body.get("worker")
    return Probe(worker if isinstance(worker, str) else "")


_READERS: dict[str, Callable[[dict[str, Any]], Event]] = {
    Insert.TYPE: lambda body: Insert(),
    Requeue.TYPE: lambda body: Requeue(),
    Done.TYPE: lambda body: Done(_ints(body.get("ids")), _strings(body.get("entrypoints"))),
    Cancel.TYPE: lambda body: Cancel(_ints(body.get("ids")) or ()),
    Pause.TYPE: lambda body: Pause(_strings(body.get("entrypoints"))),
    Resume.TYPE: lambda body: Resume(_strings(body.get("entrypoints"))),
    Probe.TYPE: _probe,
}


def concerns(event: Done, ids: Sequence[int]) -> bool:
    """Whether a ``done`` event may concern any of ``ids`` (an unlisted batch may)."""
    return event.ids is None or not set(event.ids).isdisjoint(ids)
