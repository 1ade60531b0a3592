"""Checking and shaping the arguments of ``Queries.enqueue`` (no database here).

Everything a user can get wrong is refused with a typed error before anything is written.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, Literal, TypeVar

from psycopg.types.json import Jsonb

from . import binary
from .errors import (
    ConfigurationError,
    InvalidPayloadError,
    PayloadTooLargeError,
    UnknownEntrypointError,
)
from .settings import validate_entrypoint

__all__ = [
    "MAX_DEDUPE_KEY_LENGTH",
    "EnqueueHooks",
    "OnConflict",
    "Payload",
    "Rows",
    "When",
    "build_rows",
    "with_headers",
]

Payload = bytes | bytearray | memoryview | None
When = datetime | timedelta | None
OnConflict = Literal["raise", "skip"]

T = TypeVar("T")

_INT32 = (-(2**31), 2**31 - 1)
MAX_DEDUPE_KEY_LENGTH = 512

# The times a job may be due at: what a Python datetime can hold, less a day at each end so
# that any session time zone can read it back (PostgreSQL itself goes to 294276 AD).
EARLIEST = datetime(1, 1, 2, tzinfo=timezone.utc)
LATEST = datetime(9999, 12, 30, tzinfo=timezone.utc)


class EnqueueHooks:
    """What an observer of producers does around each ``Queries.enqueue`` call (tracing
    injects the trace context this way). Register one with ``queries.add_enqueue_hooks``.

    ``enqueuing(entrypoints)`` is entered in the caller's thread before the arguments are
    checked and left once the jobs are written (or the call failed, its exception passed
    to ``__exit__``). The mapping it yields, if any, is added to every job's headers; a
    header the caller gave keeps the caller's value.
    """

    def enqueuing(
        self, entrypoints: Sequence[str]
    ) -> contextlib.AbstractContextManager[Mapping[str, Any] | None]:
        """A context manager around one enqueue call of jobs of `entrypoints`; the mapping
        it yields (or None) is added to each job's headers. The default does nothing."""
        return contextlib.nullcontext(None)


def with_headers(headers: Any, extra: Mapping[str, Any]) -> Any:
    """``enqueue``'s ``headers`` argument (a mapping, None, or a list of them) with
    ``extra`` added to each job's; what the caller gave wins. Anything else is returned as
    it is, for ``build_rows`` to refuse."""
    if not extra:
        return headers
    if headers is None:
        return dict(extra)
    if isinstance(headers, Mapping):
        return {**extra, **headers}
    if isinstance(headers, (list, tuple)):
        return [
            with_headers(h, extra) if h is None or isinstance(h, Mapping) else h for h in headers
        ]
    return headers


@dataclasses.dataclass
class Rows:
    """The columns of the jobs to insert, one list per column, in the caller's order."""

    entrypoints: list[str]
    payloads: list[bytes | None]
    priorities: list[int]
    ats: list[datetime | None]
    delays: list[timedelta | None]
    dedupe_keys: list[str | None]
    headers: list[Jsonb | None]

    def __len__(self) -> int:
        return len(self.entrypoints)

    def take(self, indices: Sequence[int]) -> Rows:
        """These rows only, in this order."""
        columns = (getattr(self, field.name) for field in dataclasses.fields(self))
        return Rows(*([column[i] for i in indices] for column in columns))

    def params_of_one(self) -> dict[str, Any]:
        """The parameters of ``enqueue_one`` (a single row's values, not arrays)."""
        return {
            "entrypoint": self.entrypoints[0],
            "payload": self.payloads[0],
            "priority": self.priorities[0],
            "at": self.ats[0],
            "delay": self.delays[0],
            "dedupe_key": self.dedupe_keys[0],
            "headers": self.headers[0],
        }

    def plain(self) -> bool:
        """Whether no job has a due time, a dedupe key or headers (``enqueue_plain``)."""
        n = len(self)
        return (
            self.ats.count(None) == n
            and self.delays.count(None) == n
            and self.dedupe_keys.count(None) == n
            and self.headers.count(None) == n
        )

    def params_plain(self) -> dict[str, Any]:
        """The parameters of ``enqueue_plain``: the three columns a plain list has."""
        return {
            "entrypoints": binary.pack_text(self.entrypoints),
            "payloads": binary.pack_bytea(self.payloads),
            "priorities": binary.pack_int4(self.priorities),
        }

    def params(self) -> dict[str, Any]:
        """The parameters of the INSERT from arrays, packed in binary where a column allows
        it (pgqueue_sync/binary.py: one step per array, not one per element); a cursor that
        sends them needs ``binary.register``."""
        n = len(self)
        return {
            **self.params_plain(),
            "ats": _packed_if_null(self.ats, binary.TimestamptzArray, n),
            "delays": _packed_if_null(self.delays, binary.IntervalArray, n),
            "dedupe_keys": binary.pack_text(self.dedupe_keys),
            "headers": _packed_if_null(self.headers, binary.JsonbArray, n),
        }


def _packed_if_null(column: list[Any], cls: type[binary.PackedArray], n: int) -> Any:
    # Times, intervals and JSON go as psycopg dumps them, unless all NULL (the usual case).
    return binary.nulls(cls, n) if column.count(None) == n else column


def _as_list(value: Any, n: int, what: str) -> list[Any]:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ConfigurationError(
                f"enqueue got {n} entrypoints but {len(value)} {what}: the lists must be "
                "the same length"
            )
        return list(value)
    return [value] * n


def build_rows(
    entrypoint: str | Sequence[str],
    payload: Any,
    priority: Any,
    execute_after: Any,
    dedupe_key: Any,
    headers: Any,
    *,
    known: Collection[str] | None,
    max_payload_bytes: int,
) -> Rows:
    """Validate enqueue's arguments (scalars or parallel lists) and return the rows."""
    if isinstance(entrypoint, str):
        if isinstance(payload, (list, tuple)):
            raise ConfigurationError(
                "enqueue got one entrypoint and a list of payloads: pass a list of entrypoints too"
            )
        entrypoints = [entrypoint]
        payloads = [payload]
    elif isinstance(entrypoint, (list, tuple)):
        entrypoints = list(entrypoint)
        payloads = _as_list(payload, len(entrypoints), "payloads")
    else:
        raise ConfigurationError(
            f"entrypoint must be a str or a list of str, not {type(entrypoint).__name__}"
        )
    n = len(entrypoints)
    _check_entrypoints(entrypoints, known)
    # A scalar argument applies to every job: it is checked once, not once per job.
    rows = Rows(
        entrypoints=entrypoints,
        payloads=[
            p
            if p is None or (type(p) is bytes and len(p) <= max_payload_bytes)
            else _payload(p, i, max_payload_bytes)
            for i, p in enumerate(payloads)
        ],
        priorities=_column(priority, n, "priorities", _priority),
        ats=[],
        delays=[],
        dedupe_keys=_column(dedupe_key, n, "dedupe keys", _key),
        headers=_column(headers, n, "headers", _headers),
    )
    whens = _column(execute_after, n, "execute_after values", _when)
    rows.ats = [at for at, _ in whens]
    rows.delays = [delay for _, delay in whens]
    return rows


def _column(value: Any, n: int, what: str, check: Callable[[Any, int], T]) -> list[T]:
    """``value`` checked, as one entry per job (a scalar repeated, a list checked item by item)."""
    if isinstance(value, (list, tuple)):
        return [check(v, i) for i, v in enumerate(_as_list(value, n, what))]
    return [check(value, 0)] * n


def _check_entrypoints(entrypoints: list[str], known: Collection[str] | None) -> None:
    for name in set(entrypoints):
        validate_entrypoint(name)
    if not known:
        return
    unknown = sorted(set(entrypoints) - set(known))
    if unknown:
        raise UnknownEntrypointError(
            f"no handler is registered for entrypoint(s) {', '.join(map(repr, unknown))}; "
            f"known: {', '.join(sorted(known))}. Register it with @qm.entrypoint(...), or "
            "create the QueueManager with check_entrypoints=False to enqueue for other "
            "services"
        )


def _payload(payload: object, index: int, limit: int) -> bytes | None:
    if payload is None:
        return None
    if isinstance(payload, bytes):
        blob = payload
    elif isinstance(payload, (bytearray, memoryview)):
        blob = bytes(payload)
    else:
        hint = " (encode it, e.g. text.encode())" if isinstance(payload, str) else ""
        raise InvalidPayloadError(
            f"payload #{index} must be bytes, bytearray, memoryview or None, "
            f"not {type(payload).__name__}{hint}"
        )
    if len(blob) > limit:
        raise PayloadTooLargeError(
            f"payload #{index} is {len(blob)} bytes, over the limit of {limit} bytes "
            "(Settings.max_payload_bytes / PGQUEUE_MAX_PAYLOAD_BYTES); store large data "
            "elsewhere and enqueue a reference to it"
        )
    return blob


def _priority(priority: object, index: int) -> int:
    if (
        isinstance(priority, bool)
        or not isinstance(priority, int)
        or not _INT32[0] <= priority <= _INT32[1]
    ):
        raise ConfigurationError(f"priority #{index} must be a 32-bit int, got {priority!r}")
    return priority


def _when(when: object, index: int) -> tuple[datetime | None, timedelta | None]:
    if when is None:
        return None, None
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise ConfigurationError(
                f"execute_after #{index} is a naive datetime: pass an aware one "
                "(e.g. datetime.now(timezone.utc) + ...) or a timedelta"
            )
        if not EARLIEST <= when <= LATEST:
            raise ConfigurationError(
                f"execute_after #{index} ({when.isoformat()}) is outside the times a job can "
                f"be due at ({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} UTC)"
            )
        return when, None
    if isinstance(when, timedelta):
        try:
            due = datetime.now(timezone.utc) + when
        except OverflowError:
            due = None
        if due is None or not EARLIEST <= due <= LATEST:
            raise ConfigurationError(
                f"execute_after #{index}: a delay of {when} puts the job outside the times it "
                f"can be due at ({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d} UTC)"
            )
        return None, when
    raise ConfigurationError(
        f"execute_after #{index} must be a timedelta, an aware datetime or None, "
        f"not {type(when).__name__}"
    )


def text_problem(value: object) -> str | None:
    """Why PostgreSQL's text (and jsonb) cannot hold the strings in ``value``, if it cannot:
    a NUL character, or a lone surrogate (not valid UTF-8). Looks into mappings, lists and
    tuples (``value`` must be acyclic)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return "a NUL character (PostgreSQL text cannot hold one)"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return (
                    "a lone surrogate, which is not valid UTF-8 (text decoded with "
                    "errors='surrogateescape'?)"
                )
        elif isinstance(item, Mapping):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return None


def _key(key: object, index: int) -> str | None:
    if key is None:
        return None
    if not isinstance(key, str) or not 0 < len(key) <= MAX_DEDUPE_KEY_LENGTH:
        raise ConfigurationError(
            f"dedupe_key #{index} must be a non-empty str of at most "
            f"{MAX_DEDUPE_KEY_LENGTH} characters"
        )
    problem = text_problem(key)
    if problem is not None:
        raise ConfigurationError(f"dedupe_key #{index} holds {problem}")
    return key


def _headers(headers: object, index: int) -> Jsonb | None:
    if headers is None:
        return None
    if not isinstance(headers, Mapping):
        raise ConfigurationError(f"headers #{index} must be a mapping or None")
    value = dict(headers)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError, RecursionError) as exc:
        error = ConfigurationError(
            f"headers #{index} cannot be stored as JSON: {exc} (headers hold str keys and "
            "JSON values: str, finite numbers, bool, None, lists and mappings of them)"
        )
    else:
        problem = text_problem(value)
        if problem is None:
            return Jsonb(value)
        error = ConfigurationError(f"headers #{index} hold {problem}")
    raise error
