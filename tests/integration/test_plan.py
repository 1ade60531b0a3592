"""The claim stays on the partial index with a sizable backlog: no Seq Scan, no Sort.

Both plans a worker can get are checked: a custom plan (the first runs of a prepared
statement) and the generic plan its fetch connection keeps afterwards (the fetch_session statement).
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue_sync import Job, Queries, QueueManager, Settings
from pgqueue_sync.sql import statements
from tests.conftest import SqlQueries

BACKLOG = 30_000


def _params(settings: Settings) -> dict[str, Any]:
    return {
        "now": None,
        "limit": 10,
        "fresh_limit": 10,
        "entrypoints": ["a", "b"],
        "worker_id": uuid.uuid4(),
        "retry_timer": timedelta(minutes=1),
    }


def _nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from _nodes(child)


@pytest.fixture
def backlog(qm: Any, conn: psycopg.Connection[Any], settings: Settings) -> Settings:
    queries: Queries = qm.queries
    for _ in range(BACKLOG // 10_000):
        queries.enqueue(["a"] * 5_000 + ["b"] * 5_000, [None] * 10_000)
    conn.execute(sql.SQL("ANALYZE {}").format(settings.ident("jobs")))
    return settings


def _check(plan: dict[str, Any], settings: Settings) -> None:
    nodes = list(_nodes(plan["Plan"]))
    jobs = settings.name("jobs")
    seq = [n for n in nodes if n["Node Type"] == "Seq Scan" and n.get("Relation Name") == jobs]
    assert not seq, "the claim scans the whole queue table"
    on_dequeue_idx = [n for n in nodes if n.get("Index Name") == settings.name("dequeue_idx")]
    assert on_dequeue_idx, "the claim does not use the partial dequeue index"
    assert all(n["Node Type"] == "Index Scan" for n in on_dequeue_idx), (
        "the claim reads the dequeue index as a bitmap, not in order"
    )
    sorts = [n for n in nodes if n["Node Type"] == "Sort"]
    # The only sort allowed is the stale-job rescue's, over the few picked rows.
    assert all("heartbeat" in " ".join(n.get("Sort Key", [])) for n in sorts), sorts


@pytest.mark.parametrize("name", ["dequeue", "dequeue_async_commit"])
def test_custom_plan_walks_the_partial_index(
    backlog: Settings, conn: psycopg.Connection[Any], name: str
) -> None:
    # dequeue_async_commit: the claim through a transaction pooler, never prepared.
    statement: bytes = getattr(statements(backlog), name)
    row = conn.execute(b"EXPLAIN (FORMAT JSON) " + statement, _params(backlog)).fetchone()
    assert row is not None
    _check(row[0][0], backlog)


def test_generic_plan_walks_the_partial_index(backlog: Settings, dsn: str) -> None:
    names: list[str] = []

    def placeholder(match: re.Match[str]) -> str:
        if match.group(1) not in names:
            names.append(match.group(1))
        return f"${names.index(match.group(1)) + 1}"

    text = re.sub(r"%\((\w+)\)s", placeholder, statements(backlog).dequeue.decode())
    params = _params(backlog)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(statements(backlog).fetch_session)
        c.execute(b"PREPARE claim AS " + text.encode())
        args = sql.SQL(", ").join(sql.Literal(params[name]) for name in names)
        explain = sql.SQL("EXPLAIN (FORMAT JSON) EXECUTE claim({})").format(args)
        row = c.execute(explain.as_string(c).encode()).fetchone()
    assert row is not None
    _check(row[0][0], backlog)


def _reltuples(conn: psycopg.Connection[Any], settings: Settings) -> float:
    regclass = settings.ident("jobs").as_string(None)
    row = conn.execute("SELECT reltuples FROM pg_class WHERE oid = %s::regclass", [regclass])
    found = row.fetchone()
    assert found is not None
    return float(found[0])


def test_a_worker_analyzes_a_queue_table_that_never_was(
    qm: Any, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    queries = SqlQueries(qm.driver, qm.settings)
    assert queries.ensure_statistics() is False  # empty: nothing to learn yet
    queries.enqueue(["a"] * 5_000, [None] * 5_000)
    assert _reltuples(conn, settings) < 0  # never analyzed
    assert queries.ensure_statistics() is True
    assert _reltuples(conn, settings) == pytest.approx(5_000, rel=0.05)
    assert queries.ensure_statistics() is False  # once is enough


def test_run_starts_by_giving_a_new_queue_table_statistics(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    @qm.entrypoint("a")
    def a(job: Job) -> None:
        pass

    qm.queries.enqueue(["a"] * 100, [None] * 100)
    assert _reltuples(conn, settings) < 0
    qm.run(mode="drain", dequeue_timeout=1)
    assert _reltuples(conn, settings) >= 0
    assert qm.queries.queue_size() == []
