"""PostgreSQL's binary wire format, packed in bulk: arrays sent as parameters, and the rows
of enqueue's COPY.

**Arrays.**
A completion sends eight arrays with an element per outcome. psycopg's binary list dumper
writes them element by element in Python (a ``struct.pack`` and a few list operations per
element: about half of a flush's CPU). Here an array of numbers is one ``array``
conversion and a dozen strided copies; an array of text, bytea or jsonb is a single join,
and one of NULLs only (most outcomes have no traceback, result or delay) a repeated
constant.

Each packer returns a :class:`PackedArray` subclass that carries its type: call
:func:`register` on a cursor and pass the arrays as parameters. The format is
``array_send``'s: the number of dimensions, a has-nulls flag, the element type's OID, then
per dimension its length and lower bound (1), then per element its byte length (-1 for
NULL) and its bytes.

**COPY rows.** :func:`copy_jobs` writes the rows of enqueue's ``COPY ... (FORMAT BINARY)``
in chunks of :data:`COPY_CHUNK_ROWS`, each repeated value (an entrypoint, a due time, NULL)
packed once per call: psycopg's ``write_row`` costs about 1.3 us of Python per row.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime, timedelta, timezone
from typing import Any, ClassVar, TypeVar

import psycopg
from psycopg import pq
from psycopg.adapt import Dumper
from psycopg.postgres import types

__all__ = [
    "COPY_CHUNK_ROWS",
    "DUMPERS",
    "ByteaArray",
    "Float8Array",
    "Int4Array",
    "Int8Array",
    "IntervalArray",
    "JsonbArray",
    "PackedArray",
    "TextArray",
    "TimestamptzArray",
    "copy_jobs",
    "nulls",
    "pack_bytea",
    "pack_float8",
    "pack_int4",
    "pack_int8",
    "pack_jsonb",
    "pack_text",
    "register",
]

P = TypeVar("P", bound="PackedArray")

_LITTLE_ENDIAN = sys.byteorder == "little"
_HEADER = struct.Struct("!iiIii")  # ndim, has nulls, element OID, length, lower bound
_EMPTY = struct.Struct("!iiI")  # an empty array has no dimension
_LENGTH = struct.Struct("!i")
_NULL = _LENGTH.pack(-1)
_JSONB_VERSION = b"\x01"  # jsonb_send's format version, before the text


class PackedArray(bytes):
    """An array already in PostgreSQL's binary format; each subclass names its element
    type (``class Int8Array(PackedArray, element="int8")``) and gets its OIDs."""

    element_oid: ClassVar[int]
    array_oid: ClassVar[int]

    def __init_subclass__(cls, *, element: str, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        info = types[element]
        cls.element_oid = info.oid
        cls.array_oid = info.array_oid


class Int8Array(PackedArray, element="int8"):
    pass


class Int4Array(PackedArray, element="int4"):
    pass


class Float8Array(PackedArray, element="float8"):
    pass


class TextArray(PackedArray, element="text"):
    pass


class ByteaArray(PackedArray, element="bytea"):
    pass


class JsonbArray(PackedArray, element="jsonb"):
    pass


class TimestamptzArray(PackedArray, element="timestamptz"):
    pass


class IntervalArray(PackedArray, element="interval"):
    pass


def _header(cls: type[PackedArray], length: int, has_nulls: bool) -> bytes:
    if length == 0:
        return _EMPTY.pack(0, 0, cls.element_oid)
    return _HEADER.pack(1, int(has_nulls), cls.element_oid, length, 1)


def _all_null(cls: type[PackedArray], length: int) -> bytes:
    return _header(cls, length, length > 0) + _NULL * length


def _pack_numbers(cls: type[PackedArray], code: str, size: int, values: Sequence[float]) -> bytes:
    # Each element is its byte length (4 bytes, big-endian: 0 0 0 size), then the number
    # big-endian. The numbers go through an array in one step, then the elements are woven
    # with strided slice assignments: a dozen C-level copies whatever the length.
    numbers = array(code, values)
    assert numbers.itemsize == size
    if _LITTLE_ENDIAN:
        numbers.byteswap()
    raw = numbers.tobytes()
    n = len(numbers)
    step = 4 + size
    body = bytearray(step * n)
    body[3::step] = bytes((size,)) * n
    for i in range(size):
        body[4 + i :: step] = raw[i::size]
    return _header(cls, n, False) + body


def pack_int8(values: Sequence[int]) -> Int8Array:
    """A ``bigint[]`` of ``values`` (no NULL; OverflowError past 64 bits)."""
    return Int8Array(_pack_numbers(Int8Array, "q", 8, values))


def pack_int4(values: Sequence[int]) -> Int4Array:
    """An ``integer[]`` of ``values`` (no NULL; OverflowError past 32 bits)."""
    return Int4Array(_pack_numbers(Int4Array, "i", 4, values))


def pack_float8(values: Sequence[float]) -> Float8Array:
    """A ``float8[]`` of ``values`` (no NULL)."""
    return Float8Array(_pack_numbers(Float8Array, "d", 8, values))


def _pack_bytes(cls: type[PackedArray], values: Sequence[bytes | None]) -> bytes:
    n = len(values)
    nulls = values.count(None)
    if nulls == n:
        return _all_null(cls, n)
    parts = [_header(cls, n, nulls > 0)]
    append = parts.append
    for value in values:
        if value is None:
            append(_NULL)
        else:
            append(_LENGTH.pack(len(value)))
            append(value)
    return b"".join(parts)


class _Elements(dict[str | None, bytes]):
    """Each distinct string's element (its length and UTF-8), made once per array: lists
    of text repeat a few values (statuses, an entrypoint, NULL)."""

    def __init__(self, prefix: bytes) -> None:
        super().__init__({None: _NULL})
        self._prefix = prefix

    def __missing__(self, value: str | None) -> bytes:
        assert value is not None
        data = self._prefix + value.encode("utf-8")
        element = self[value] = _LENGTH.pack(len(data)) + data
        return element


def _pack_strings(cls: type[PackedArray], values: Sequence[str | None], prefix: bytes) -> bytes:
    n = len(values)
    nulls = values.count(None)
    if nulls == n:
        return _all_null(cls, n)
    return _header(cls, n, nulls > 0) + b"".join(map(_Elements(prefix).__getitem__, values))


def pack_text(values: Sequence[str | None]) -> TextArray:
    """A ``text[]`` of ``values`` (None is NULL), in UTF-8."""
    return TextArray(_pack_strings(TextArray, values, b""))


def pack_bytea(values: Sequence[bytes | None]) -> ByteaArray:
    """A ``bytea[]`` of ``values`` (None is NULL)."""
    return ByteaArray(_pack_bytes(ByteaArray, values))


def pack_jsonb(values: Sequence[str | None]) -> JsonbArray:
    """A ``jsonb[]`` of ``values``, each a JSON document as text (None is NULL)."""
    return JsonbArray(_pack_strings(JsonbArray, values, _JSONB_VERSION))


def nulls(cls: type[P], length: int) -> P:
    """An array of ``length`` NULLs of ``cls``'s type."""
    return cls(_all_null(cls, length))


class _PackedDumper(Dumper):
    format = pq.Format.BINARY

    def dump(self, obj: object) -> bytes:
        assert isinstance(obj, PackedArray)
        return obj


def _dumper(cls: type[PackedArray]) -> type[Dumper]:
    return type(f"{cls.__name__}Dumper", (_PackedDumper,), {"oid": cls.array_oid})


# A dumper per array type (``register`` puts them on a cursor).
DUMPERS: tuple[tuple[type[PackedArray], type[Dumper]], ...] = tuple(
    (cls, _dumper(cls)) for cls in PackedArray.__subclasses__()
)


def register(cursor: psycopg.Cursor[Any]) -> None:
    """Let ``cursor`` send packed arrays as parameters."""
    for cls, dumper in DUMPERS:
        cursor.adapters.register_dumper(cls, dumper)


# -- COPY rows ---------------------------------------------------------------------------

# Rows per chunk of COPY data (about 60 KB for jobs without payload).
COPY_CHUNK_ROWS = 1000
_COPY_START = b"PGCOPY\n\xff\r\n\x00" + struct.pack("!ii", 0, 0)  # signature, flags, extension
_COPY_END = struct.pack("!h", -1)
_ROW_START = struct.Struct("!hiqii")  # 7 fields; id (int8) and priority (int4), each sized
_TIMESTAMPTZ = struct.Struct("!iq")  # sized; microseconds since 2000-01-01 UTC
_PG_EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)
_MICROSECOND = timedelta(microseconds=1)


class _Times(dict[datetime, bytes]):
    """Each distinct time's timestamptz element, made once per call."""

    def __missing__(self, value: datetime) -> bytes:
        element = self[value] = _TIMESTAMPTZ.pack(8, (value - _PG_EPOCH) // _MICROSECOND)
        return element


def copy_jobs(
    ids: Sequence[int],
    priorities: Sequence[int],
    entrypoints: Sequence[str],
    payloads: Sequence[bytes | None],
    ats: Sequence[datetime],
    dedupe_keys: Sequence[str | None],
    headers: Sequence[object | None],
    dump_json: Callable[[object], bytes],
) -> Iterator[bytes]:
    """The binary COPY data of these jobs: ``id, priority, entrypoint, payload,
    execute_after, dedupe_key, headers`` (``models.ENQUEUE_COLUMNS``, which the COPY
    statement names), one row per index, in chunks of
    COPY_CHUNK_ROWS rows (a long list is never one large buffer: glibc keeps such buffers
    out of mmap once one was freed, and the heap they leave behind stays resident). ``ats``
    are aware datetimes; ``dump_json`` gives a header's jsonb element body (psycopg's)."""
    start = _ROW_START.pack
    size = _LENGTH.pack
    text = _Elements(b"")
    times = _Times()
    parts = [_COPY_START]
    append = parts.append
    for n, (job_id, priority, entrypoint, payload, at, key, header) in enumerate(
        zip(ids, priorities, entrypoints, payloads, ats, dedupe_keys, headers, strict=True)
    ):
        if n % COPY_CHUNK_ROWS == 0 and n:
            yield b"".join(parts)
            parts.clear()
        append(start(7, 8, job_id, 4, priority))
        append(text[entrypoint])
        if payload is None:
            append(_NULL)
        else:
            append(size(len(payload)))
            append(payload)
        append(times[at])
        append(text[key])
        if header is None:
            append(_NULL)
        else:
            body = dump_json(header)
            append(size(len(body)))
            append(body)
    append(_COPY_END)
    yield b"".join(parts)
