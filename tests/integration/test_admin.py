"""The operator's API on a real queue: status, listings, job detail, requeue, purge, pause."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import psycopg
import pytest
import tenacity
from psycopg import sql

from pgqueue_sync import (
    ConfigurationError,
    InvalidEntrypointError,
    Job,
    JobNotFoundError,
    JobStatus,
    QueueManager,
    RetryPolicy,
    Settings,
)
from pgqueue_sync.admin_models import EntrypointStatus, jsonable

GIVE_UP = RetryPolicy(stop=tenacity.stop_after_attempt(1))


def drain(qm: QueueManager) -> None:
    qm.run(mode="drain", dequeue_timeout=1.0, workers=2)


@pytest.fixture
def filled(qm: QueueManager) -> dict[str, list[int]]:
    """ok: 3 done; bad: 2 failed (kept); boom: 1 exception; later: 2 deferred; waiting: 2
    queued (no handler runs them: the worker serves other entrypoints)."""

    @qm.entrypoint("ok")
    def ok(job: Job) -> str:
        return "fine"

    @qm.entrypoint("bad", retry=GIVE_UP)
    def bad(job: Job) -> None:
        raise ValueError(f"bad job {job.id}")

    @qm.entrypoint("boom")
    def boom(job: Job) -> None:
        raise KeyError("boom")

    ids = {
        "ok": qm.queries.enqueue(["ok"] * 3, [None] * 3),
        "bad": qm.queries.enqueue(["bad"] * 2, [b"x", b"y"]),
        "boom": qm.queries.enqueue("boom", None),
    }
    drain(qm)
    producer = QueueManager(qm.driver, settings=qm.settings, check_entrypoints=False)
    ids["later"] = producer.queries.enqueue(
        ["later"] * 2, [None] * 2, execute_after=timedelta(hours=1)
    )
    ids["waiting"] = producer.queries.enqueue(["waiting"] * 2, [None] * 2, priority=[0, 5])
    return ids


def by_name(rows: list[EntrypointStatus]) -> dict[str, EntrypointStatus]:
    return {row.entrypoint: row for row in rows}


def test_status_counts_each_state_and_the_last_minute(
    qm: QueueManager, filled: dict[str, list[int]]
) -> None:
    qm.queries.pause("waiting")
    rows = by_name(qm.queries.status())
    assert sorted(rows) == ["bad", "boom", "later", "ok", "waiting"]
    counts = {
        name: (r.queued, r.deferred, r.picked, r.failed, r.done_last_minute, r.failed_last_minute)
        for name, r in rows.items()
    }
    assert counts == {
        "ok": (0, 0, 0, 0, 3, 0),
        "bad": (0, 0, 0, 2, 2, 2),
        "boom": (0, 0, 0, 0, 1, 1),
        "later": (0, 2, 0, 0, 0, 0),
        "waiting": (2, 0, 0, 0, 0, 0),
    }
    assert {n: r.enqueued_last_minute for n, r in rows.items()} == {
        "ok": 3,
        "bad": 2,
        "boom": 1,
        "later": 2,
        "waiting": 2,
    }
    assert rows["waiting"].paused
    assert rows["waiting"].paused_since is not None
    assert not rows["ok"].paused
    waited = rows["waiting"].oldest_waiting_seconds
    assert waited is not None
    assert 0 <= waited < 60
    assert rows["later"].oldest_waiting_seconds is None  # nothing due
    latency = rows["ok"].pickup_latency_seconds
    assert latency is not None
    assert 0 <= latency < 30
    # The JSON form keeps every key (the CLI prints it with --json).
    data = json.loads(json.dumps(jsonable(rows["waiting"])))
    assert data["entrypoint"] == "waiting"
    assert data["paused"] is True


def test_listings_page_by_cursor_newest_first(
    qm: QueueManager, filled: dict[str, list[int]]
) -> None:
    live = qm.queries.list_jobs(limit=3)
    expected = sorted(filled["bad"] + filled["later"] + filled["waiting"], reverse=True)
    assert [j.id for j in live.jobs] == expected[:3]
    assert live.next_cursor is not None
    rest = qm.queries.list_jobs(limit=3, cursor=live.next_cursor)
    assert [j.id for j in rest.jobs] == expected[3:]
    assert rest.next_cursor is None

    failed = qm.queries.list_jobs(status="failed")
    assert [j.id for j in failed.jobs] == sorted(filled["bad"], reverse=True)
    assert all(j.error and j.error.startswith("ValueError: bad job") for j in failed.jobs)
    assert [j.id for j in qm.queries.list_jobs(status="queued", entrypoint="later").jobs] == (
        sorted(filled["later"], reverse=True)
    )
    done = qm.queries.list_jobs(status=JobStatus.SUCCESSFUL, limit=2)
    assert [j.id for j in done.jobs] == sorted(filled["ok"], reverse=True)[:2]
    assert all(j.duration is not None and j.due_at is not None for j in done.jobs)
    assert done.next_cursor is not None
    [last] = qm.queries.list_jobs(status="successful", cursor=done.next_cursor).jobs
    assert last.id == min(filled["ok"])
    [boom] = qm.queries.list_jobs(status="exception").jobs
    assert (boom.id, boom.error) == (filled["boom"][0], "KeyError: 'boom'")
    assert qm.queries.list_jobs(status="picked").jobs == []
    assert qm.queries.list_jobs(status="canceled").jobs == []


def test_job_detail_has_the_job_its_outcomes_and_last_traceback(
    qm: QueueManager, filled: dict[str, list[int]]
) -> None:
    bad = qm.queries.job_detail(filled["bad"][0])
    assert bad.job is not None
    assert bad.job.payload == b"x"
    assert bad.status is JobStatus.FAILED
    assert bad.entrypoint == "bad"
    assert [e.status for e in bad.log] == [JobStatus.FAILED]
    assert "ValueError: bad job" in (bad.traceback or "")
    ok = qm.queries.job_detail(filled["ok"][0])
    assert ok.job is None
    assert ok.status is JobStatus.SUCCESSFUL
    assert ok.log[0].value == "fine"
    assert ok.traceback is None
    data = json.loads(json.dumps(jsonable(bad)))
    assert data["status"] == "failed"
    assert data["job"]["payload"] == "eA=="
    with pytest.raises(JobNotFoundError):
        qm.queries.job_detail(10**9)


def test_requeue_failed_says_what_it_did_with_each_id(
    qm: QueueManager, filled: dict[str, list[int]]
) -> None:
    first, second = filled["bad"]
    waiting = filled["waiting"][0]
    result = qm.queries.requeue_failed([first, waiting, filled["ok"][0], 10**9])
    assert result.requeued == [first]
    assert result.live == [waiting]
    assert result.finished == [filled["ok"][0]]
    assert result.unknown == [10**9]
    [job] = qm.queries.get_jobs([first])
    assert (job.status, job.attempts) == (JobStatus.QUEUED, 0)
    # Every failed job of an entrypoint:
    assert qm.queries.requeue_failed(entrypoint="bad").requeued == [second]
    assert qm.queries.requeue_failed().requeued == []
    with pytest.raises(ConfigurationError, match="not both"):
        qm.queries.requeue_failed([first], entrypoint="bad")


def test_purge_deletes_queued_or_failed_jobs_never_running_ones(
    qm: QueueManager, filled: dict[str, list[int]]
) -> None:
    assert qm.queries.purge(entrypoint="later") == 2  # deferred jobs are queued
    assert qm.queries.purge(["failed"]) == 2
    assert qm.queries.purge() == 2
    assert qm.queries.list_jobs().jobs == []
    with pytest.raises(ConfigurationError, match="purge deletes jobs that are queued or failed"):
        qm.queries.purge(["picked"])
    with pytest.raises(ConfigurationError, match="unknown job status 'nope'"):
        qm.queries.purge(["nope"])


def test_pause_and_resume_report_what_changed(
    qm: QueueManager, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(settings.channel)))
    assert qm.queries.pause(["b", "a", "a"], reason="deploy") == ["a", "b"]
    assert qm.queries.pause("a") == []
    paused = qm.queries.paused()
    assert [(p.entrypoint, p.reason) for p in paused] == [("a", "deploy"), ("b", "deploy")]
    assert qm.queries.resume(["a", "c"]) == ["a"]
    events = [json.loads(n.payload) for n in conn.notifies(timeout=1, stop_after=2)]
    assert events == [
        {"type": "pause", "entrypoints": ["a", "b"]},
        {"type": "resume", "entrypoints": ["a"]},
    ]
    with pytest.raises(InvalidEntrypointError):
        qm.queries.pause("no spaces")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"status": "running"}, "unknown job status 'running'"),
        ({"status": "picked", "limit": 0}, "limit must be an int"),
        ({"limit": -1}, "limit must be an int"),
        ({"cursor": "12"}, "cursor must be an int"),
    ],
)
def test_bad_listing_arguments_are_typed_errors(
    qm: QueueManager, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigurationError, match=message):
        qm.queries.list_jobs(**kwargs)
