"""Queries.rates: the queue's traffic per minute (the web dashboard's charts)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta, timezone
from typing import Any

import psycopg
import pytest
import tenacity
from psycopg import sql

from pgqueue_sync import ConfigurationError, Job, MinuteRates, QueueManager, RetryPolicy
from pgqueue_sync_aio import AsyncQueries

GIVE_UP = RetryPolicy(stop=tenacity.stop_after_attempt(1))


def totals(rows: list[MinuteRates]) -> tuple[int, int, int]:
    return (sum(r.enqueued for r in rows), sum(r.done for r in rows), sum(r.failed for r in rows))


def test_rates_count_arrivals_outcomes_failures_and_latency_per_minute(qm: QueueManager) -> None:
    @qm.entrypoint("ok")
    def ok(job: Job) -> None:
        pass

    @qm.entrypoint("bad", retry=GIVE_UP)
    def bad(job: Job) -> None:
        raise ValueError("bad")

    qm.queries.enqueue(["ok"] * 3 + ["bad"] * 2, [None] * 5)
    qm.run(mode="drain", dequeue_timeout=1.0, workers=2)
    producer = QueueManager(qm.driver, settings=qm.settings, check_entrypoints=False)
    producer.queries.enqueue(["later"] * 4, [None] * 4, execute_after=timedelta(hours=1))

    rows = qm.queries.rates(5)
    assert len(rows) == 5
    minutes = [r.minute for r in rows]
    assert minutes == sorted(minutes)
    assert all(b - a == timedelta(minutes=1) for a, b in itertools.pairwise(minutes))
    assert all(m.second == 0 and m.microsecond == 0 for m in minutes)
    assert minutes[-1] <= datetime.now(timezone.utc) < minutes[-1] + timedelta(minutes=1)
    # 9 jobs enqueued (a failed one counted once: it is both in the queue and the log), 5
    # outcomes written, 2 of them failures.
    assert totals(rows) == (9, 5, 2)
    latencies = [r.pickup_latency_seconds for r in rows if r.done]
    assert latencies
    assert all(lat is not None and 0 <= lat < 30 for lat in latencies)
    assert all(r.pickup_latency_seconds is None for r in rows if not r.done)

    assert totals(qm.queries.rates(5, entrypoint="bad")) == (2, 2, 2)
    assert totals(qm.queries.rates(5, entrypoint="later")) == (4, 0, 0)
    assert totals(qm.queries.rates(5, entrypoint="none")) == (0, 0, 0)


def test_rates_put_each_outcome_in_its_minute(
    qm: QueueManager, conn: psycopg.Connection[Any]
) -> None:
    """Outcomes written 30 and 90 minutes ago: the first in the hour, in its own minute;
    the second outside it. Arrivals count by enqueue time."""
    now = conn.execute("SELECT now()").fetchone()
    assert now is not None
    at = now[0]
    log = qm.settings.ident("log")
    conn.execute(
        sql.SQL(
            "INSERT INTO {} (job_id, entrypoint, status, priority, attempts, enqueued, created,"
            " due, duration) VALUES"
            " (1, 'x', 'successful', 0, 1, %(t)s - interval '31 minutes',"
            "  %(t)s - interval '30 minutes', %(t)s - interval '31 minutes', interval '2 s'),"
            " (2, 'x', 'exception', 0, 1, %(t)s - interval '91 minutes',"
            "  %(t)s - interval '90 minutes', %(t)s - interval '91 minutes', interval '1 s')"
        ).format(log),
        {"t": at},
    )
    rows = qm.queries.rates(60)
    assert len(rows) == 60
    assert totals(rows) == (1, 1, 0)
    [done] = [r for r in rows if r.done]
    assert done.minute <= at - timedelta(minutes=30) < done.minute + timedelta(minutes=1)
    [arrived] = [r for r in rows if r.enqueued]
    assert arrived.minute == done.minute - timedelta(minutes=1)
    # Due a minute before its outcome was written, and ran 2 s: picked up after 58 s.
    assert done.pickup_latency_seconds == pytest.approx(60 - 2, abs=0.01)
    assert totals(qm.queries.rates(120)) == (2, 2, 1)


@pytest.mark.parametrize("minutes", [0, 1441, -1, True, 2.5, "5"])
def test_rates_refuse_a_bad_span(qm: QueueManager, minutes: object) -> None:
    with pytest.raises(ConfigurationError, match="minutes must be an int from 1 to 1440"):
        qm.queries.rates(minutes)  # type: ignore[arg-type]


def test_rates_refuse_a_bad_entrypoint(qm: QueueManager) -> None:
    with pytest.raises(ConfigurationError):
        qm.queries.rates(5, entrypoint="")


@pytest.mark.anyio
async def test_async_rates(qm: QueueManager) -> None:
    rows = await AsyncQueries(qm.queries).rates(3)
    assert [r.enqueued for r in rows] == [0, 0, 0]
