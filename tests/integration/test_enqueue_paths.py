"""INSERT and COPY enqueue the same jobs: a property over generated inputs.

``enqueue`` writes a single job with a one-row ``INSERT ... VALUES``, short lists with one
``INSERT ... SELECT FROM unnest(...)`` (of three arrays for a plain list, whose jobs have
no due time, dedupe key or headers) and long ones with COPY (ids reserved first). Each
property a user relies on (ids in the order given, each the id of its own input;
priorities, delays and times, dedupe keys, headers, payloads) must hold on every path. The
same generated inputs go through a queue whose COPY threshold is lowered, so lists of a few
jobs cross it (and single jobs take the one-row INSERT), and through one that never uses
COPY nor the one-row INSERT (unnest for every list); the two schemas must end up holding
the same rows, and ``ids`` must match position by position (relative to the first id: each
schema has its own sequence). A ManualClock fixes ``now``, so due times are exact.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from pgqueue_sync import DuplicateJobError, ManualClock, PsycopgDriver, Queries, Settings
from pgqueue_sync.enqueue import OnConflict

THRESHOLD = 4  # the lowered COPY threshold: lists of 4 or more go through COPY
START = datetime.fromisoformat("2030-01-01T00:00:00+00:00")

When = datetime | timedelta | None


@dataclasses.dataclass
class Inputs:
    entrypoints: list[str]
    payloads: list[bytes | None]
    priority: int | list[int]
    execute_after: When | list[When]
    dedupe_key: list[str | None] | None
    headers: dict[str, Any] | list[dict[str, Any] | None] | None
    on_conflict: OnConflict

    def at(self, i: int, column: Any) -> Any:
        return column[i] if isinstance(column, list) else column

    def due(self, i: int, now: datetime) -> datetime:
        when = self.at(i, self.execute_after)
        if when is None:
            return now
        return when if isinstance(when, datetime) else now + when


def _whens() -> st.SearchStrategy[When]:
    return st.one_of(
        st.none(),
        st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=400)),
        st.timedeltas(min_value=timedelta(days=-30), max_value=timedelta(days=30)).map(
            lambda d: START + d
        ),
    )


# Storable headers only (a NUL is refused before anything is written: see the hardening
# tests), so that both paths take every input.
_HEADERS = st.dictionaries(
    st.text("abcxyz_", min_size=1, max_size=5),
    st.one_of(
        st.integers(-5, 5),
        st.text(st.characters(exclude_characters="\x00"), max_size=5),
        st.booleans(),
        st.none(),
    ),
    max_size=3,
)


@st.composite
def inputs(draw: st.DrawFn) -> Inputs:
    n = draw(st.integers(0, 2 * THRESHOLD + 2), label="n")

    def column(item: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        return st.lists(item, min_size=n, max_size=n)

    keyed = draw(st.booleans(), label="keyed")
    return Inputs(
        entrypoints=draw(column(st.sampled_from(["a", "b.c"]))),
        payloads=draw(column(st.one_of(st.none(), st.binary(max_size=16)))),
        priority=draw(
            st.one_of(st.integers(-(2**31), 2**31 - 1), column(st.integers(-(2**31), 2**31 - 1)))
        ),
        execute_after=draw(st.one_of(_whens(), column(_whens()))),
        dedupe_key=draw(column(st.sampled_from([None, "k1", "k2", "k3"]))) if keyed else None,
        headers=draw(st.one_of(st.none(), _HEADERS, column(st.one_of(st.none(), _HEADERS)))),
        on_conflict=draw(st.sampled_from(["raise", "skip"])),
    )


class Path:
    """One queue (its own schema) on a ManualClock, with its COPY threshold and whether a
    single job takes the one-row INSERT."""

    def __init__(self, dsn: str, copy_threshold: int, single_row: bool) -> None:
        self.schema = f"p_{uuid.uuid4().hex[:12]}"
        self.conn: psycopg.Connection[Any] = psycopg.connect(dsn, autocommit=True)
        self.clock = ManualClock(START)
        self.queries = Queries(
            PsycopgDriver(self.conn), Settings(schema=self.schema), clock=self.clock
        )
        self.queries.copy_threshold = copy_threshold
        self.queries.single_row = single_row
        self.queries.install()
        self.table = Settings(schema=self.schema).ident("jobs").as_string(self.conn)

    def enqueue(self, given: Inputs) -> list[int] | DuplicateJobError:
        self.conn.execute(f"TRUNCATE {self.table}")  # each example starts from an empty queue
        try:
            return self.queries.enqueue(
                given.entrypoints,
                given.payloads,
                given.priority,
                given.execute_after,
                dedupe_key=given.dedupe_key,
                on_conflict=given.on_conflict,
                headers=given.headers,
            )
        except DuplicateJobError as exc:
            return exc

    def rows(self, ids: list[int]) -> list[tuple[Any, ...]]:
        """The rows of ``ids``, position by position, as a user reads them."""
        by_id = {job.id: job for job in self.queries.get_jobs(ids)}
        return [
            (
                by_id[i].entrypoint,
                by_id[i].payload,
                by_id[i].priority,
                by_id[i].execute_after,
                by_id[i].dedupe_key,
                by_id[i].headers,
                by_id[i].status,
                by_id[i].attempts,
            )
            for i in ids
        ]

    def count(self) -> int:
        row = self.conn.execute(f"SELECT count(*) FROM {self.table}").fetchone()
        return int(row[0]) if row else 0

    def close(self) -> None:
        try:
            self.conn.execute(f'DROP SCHEMA IF EXISTS "{self.schema}" CASCADE')
        finally:
            self.conn.close()


@pytest.fixture
def paths(dsn: str) -> Iterator[tuple[Path, Path]]:
    copy, insert = Path(dsn, THRESHOLD, single_row=True), Path(dsn, 10**9, single_row=False)
    try:
        yield copy, insert
    finally:
        copy.close()
        insert.close()


# The profile's suppressed health checks (too_slow: a loaded machine) and this one: the
# schemas are made once per test and emptied for each example.
@settings(
    suppress_health_check=[*settings().suppress_health_check, HealthCheck.function_scoped_fixture]
)
@given(given=inputs())
# Always tried, besides the generated ones: a long list with every kind of due time, a
# keyed list whose skipped and new jobs interleave, and long lists that are plain but for
# one option (none; headers; a due time), the plain INSERT's border.
@example(
    given=Inputs(
        entrypoints=["a", "b.c"] * 3,
        payloads=[bytes([i]) if i % 3 else None for i in range(6)],
        priority=[5, -2, 0, 7, 2**31 - 1, -(2**31)],
        execute_after=None,
        dedupe_key=None,
        headers=None,
        on_conflict="raise",
    )
)
@example(
    given=Inputs(
        entrypoints=["a"] * 5,
        payloads=[None] * 5,
        priority=0,
        execute_after=None,
        dedupe_key=None,
        headers=[None, {"t": 1}, None, None, None],
        on_conflict="raise",
    )
)
@example(
    given=Inputs(
        entrypoints=["a"] * 4,
        payloads=[None] * 4,
        priority=1,
        execute_after=[None, None, timedelta(seconds=30), None],
        dedupe_key=None,
        headers=None,
        on_conflict="raise",
    )
)
@example(
    given=Inputs(
        entrypoints=["a"] * 6,
        payloads=[bytes([i]) for i in range(6)],
        priority=[3, -1, 0, 2**31 - 1, -(2**31), 0],
        execute_after=[None, timedelta(seconds=5), START - timedelta(days=1)] * 2,
        dedupe_key=None,
        headers=[{"n": i} for i in range(6)],
        on_conflict="raise",
    )
)
@example(
    given=Inputs(
        entrypoints=["a"] * 5,
        payloads=[bytes([i]) for i in range(5)],
        priority=0,
        execute_after=None,
        dedupe_key=["k1", None, None, "k1", None],
        headers=None,
        on_conflict="skip",
    )
)
def test_insert_and_copy_enqueue_the_same_jobs(paths: tuple[Path, Path], given: Inputs) -> None:
    copy, insert = paths
    got = copy.enqueue(given)
    expected = insert.enqueue(given)
    if isinstance(expected, DuplicateJobError):
        assert isinstance(got, DuplicateJobError), got
        assert got.dedupe_keys == expected.dedupe_keys
        assert copy.count() == insert.count() == 0  # nothing written
        return
    assert not isinstance(got, DuplicateJobError), got
    n = len(given.entrypoints)
    assert len(got) == len(expected) == n
    # The same ids, position by position (each schema numbers from its own sequence).
    assert [i - got[0] for i in got] == [i - expected[0] for i in expected]
    assert copy.rows(got) == insert.rows(expected)
    # And each id is its own input's job (the first input holding its dedupe key, for the
    # ones skipped as duplicates), due when that input said.
    keys = given.dedupe_key or [None] * n
    first_with_key = {k: keys.index(k) for k in keys if k is not None}
    rows = copy.rows(got)
    for i, row in enumerate(rows):
        key = keys[i]
        owner = i if key is None else first_with_key[key]
        assert row[:6] == (
            given.entrypoints[owner],
            given.payloads[owner],
            given.at(owner, given.priority),
            given.due(owner, START),
            keys[owner],
            given.at(owner, given.headers),
        ), (i, owner)
    # New jobs get ascending ids in the order given.
    new = [got[i] for i, key in enumerate(keys) if key is None or first_with_key[key] == i]
    assert new == sorted(set(new))
    assert copy.count() == insert.count() == len(new)
