"""The completion's arrays, packed by hand in PostgreSQL's binary format, read back by the
server as the values they were made of (generated lists, NULLs, edge values, empty)."""

from __future__ import annotations

import json
import math
from typing import Any

import psycopg
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pgqueue_sync import binary

_settings = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

# What PostgreSQL's text accepts: no NUL, no lone surrogate (storable_text sees to both).
_text = st.text(st.characters(exclude_categories=["Cs"], exclude_characters="\x00"))


def _select(conn: psycopg.Connection[Any], cast: str, value: binary.PackedArray) -> Any:
    with conn.cursor() as cur:
        binary.register(cur)
        cur.execute(f"SELECT %s::{cast}, cardinality(%s::{cast})", (value, value))
        row = cur.fetchone()
        assert row is not None
        return row


@_settings
@given(st.lists(st.integers(-(2**63), 2**63 - 1), max_size=300))
def test_bigint_arrays(conn: psycopg.Connection[Any], values: list[int]) -> None:
    back, length = _select(conn, "bigint[]", binary.pack_int8(values))
    assert (back, length) == (values, len(values))


@_settings
@given(st.lists(st.integers(-(2**31), 2**31 - 1), max_size=300))
def test_integer_arrays(conn: psycopg.Connection[Any], values: list[int]) -> None:
    back, length = _select(conn, "integer[]", binary.pack_int4(values))
    assert (back, length) == (values, len(values))


@_settings
@given(st.lists(st.floats(allow_nan=True, allow_infinity=True), max_size=300))
def test_float8_arrays(conn: psycopg.Connection[Any], values: list[float]) -> None:
    back, _ = _select(conn, "float8[]", binary.pack_float8(values))
    assert len(back) == len(values)
    for got, sent in zip(back, values, strict=True):
        assert (math.isnan(got) and math.isnan(sent)) or got == sent


@_settings
@given(st.lists(st.none() | st.sampled_from(["queued", "é", ""]) | _text, max_size=100))
def test_text_arrays(conn: psycopg.Connection[Any], values: list[str | None]) -> None:
    back, length = _select(conn, "text[]", binary.pack_text(values))
    assert (back, length) == (values, len(values))


@_settings
@given(st.lists(st.none() | st.binary(max_size=200), max_size=100))
def test_bytea_arrays(conn: psycopg.Connection[Any], values: list[bytes | None]) -> None:
    back, length = _select(conn, "bytea[]", binary.pack_bytea(values))
    assert (back, length) == (values, len(values))


_json = st.recursive(
    st.none() | st.booleans() | st.integers(-(10**6), 10**6) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=10,
)


@_settings
@given(st.lists(st.none() | _json.map(json.dumps), max_size=50))
def test_jsonb_arrays(conn: psycopg.Connection[Any], values: list[str | None]) -> None:
    back, length = _select(conn, "jsonb[]", binary.pack_jsonb(values))
    assert length == len(values)
    assert back == [None if v is None else json.loads(v) for v in values]


def test_an_array_of_nulls_only_and_an_empty_one(conn: psycopg.Connection[Any]) -> None:
    assert _select(conn, "text[]", binary.pack_text([None, None])) == ([None, None], 2)
    assert _select(conn, "jsonb[]", binary.pack_jsonb([None])) == ([None], 1)
    assert _select(conn, "bytea[]", binary.pack_bytea([])) == ([], 0)
    assert _select(conn, "bigint[]", binary.pack_int8([])) == ([], 0)
    kinds: list[tuple[type[binary.PackedArray], str]] = [
        (binary.TimestamptzArray, "timestamptz[]"),
        (binary.IntervalArray, "interval[]"),
    ]
    for cls, cast in kinds:
        assert _select(conn, cast, binary.nulls(cls, 3)) == ([None] * 3, 3)
        assert _select(conn, cast, binary.nulls(cls, 0)) == ([], 0)
