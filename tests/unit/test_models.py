"""Job rows and the job Context, without a database."""

from __future__ import annotations

import dataclasses
import re
import uuid
from datetime import datetime, timezone

import pytest

from pgqueue_sync.context import Context, JobCancelled
from pgqueue_sync.models import CLAIM_COLUMNS, ENQUEUE_COLUMNS, JOB_COLUMN_TYPES, Job, JobStatus
from pgqueue_sync.settings import Settings
from pgqueue_sync.sql import statements, templates

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
LATER = datetime(2030, 1, 2, tzinfo=timezone.utc)
WORKER = uuid.uuid4()


def _job() -> Job:
    return Job(7, 1, NOW, NOW, NOW, NOW, JobStatus.PICKED, "e", b"p", 2, WORKER, "k", {"a": 1})


def test_from_tuple_builds_the_same_frozen_job_as_the_constructor() -> None:
    row = (7, 1, NOW, NOW, NOW, NOW, "picked", "e", memoryview(b"p"), 2, WORKER, "k", {"a": 1})
    job = Job.from_tuple((*row, None, 0, 0, 0, None))
    assert job == _job()
    assert type(job.payload) is bytes
    assert job.status is JobStatus.PICKED
    assert job.cancel_requested is False
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.id = 8  # type: ignore[misc]


def test_from_claim_builds_the_same_frozen_job_from_the_claimed_columns() -> None:
    full = Job(7, 1, NOW, LATER, LATER, NOW, JobStatus.PICKED, "e", b"p", 2, WORKER, "k",
               {"a": 1}, "tb", True, 3, 4, None)  # fmt: skip
    row = [getattr(full, name) for name in CLAIM_COLUMNS]
    row[CLAIM_COLUMNS.index("payload")] = memoryview(b"p")
    row[CLAIM_COLUMNS.index("updated")] = None  # the claim's time comes from one row only
    job = Job.from_claim(row, WORKER, LATER)
    assert job == full
    # A due time read as NULL is the creation's (the claim returns it so when they match).
    row[CLAIM_COLUMNS.index("execute_after")] = None
    assert Job.from_claim(row, WORKER, LATER).execute_after == NOW == full.created
    assert dataclasses.asdict(job) == dataclasses.asdict(full)
    assert type(job.payload) is bytes
    with pytest.raises(dataclasses.FrozenInstanceError):
        job.id = 8  # type: ignore[misc]


def test_cancelled_event_made_before_or_after_the_cancel() -> None:
    early = Context(job=_job(), worker_id=WORKER)
    event = early.cancelled
    states = [early.is_cancelled]
    assert not event.is_set()
    early.check()  # not cancelled: no error
    early.cancel()
    states.append(early.is_cancelled)
    assert states == [False, True]
    assert event.is_set()
    assert early.cancelled is event

    late = Context(job=_job(), worker_id=WORKER)
    late.cancel()
    assert late.cancelled.is_set()
    with pytest.raises(JobCancelled):
        late.check()


def test_cancel_callbacks_run_once_and_at_once_when_already_cancelled() -> None:
    ctx = Context(job=_job(), worker_id=WORKER)
    calls: list[str] = []
    ctx.on_cancel(lambda: calls.append("first"))
    unregister = ctx.on_cancel(lambda: calls.append("removed"))
    unregister()
    ctx.cancel()
    ctx.cancel()
    ctx.on_cancel(lambda: calls.append("after"))
    assert calls == ["first", "after"]


def test_the_declared_columns_are_the_job_fields_in_order() -> None:
    assert list(JOB_COLUMN_TYPES) == [f.name for f in dataclasses.fields(Job)]
    assert set(ENQUEUE_COLUMNS) <= set(JOB_COLUMN_TYPES)


def test_the_claim_reads_the_declared_columns_in_order() -> None:
    claim = statements(Settings()).dequeue.decode()
    returning = claim[claim.index("RETURNING") + len("RETURNING") :]
    read = re.findall(r'\bAS "?(\w+)"?\s*(?:,|$)', returning.strip())
    assert read == list(CLAIM_COLUMNS)
    # In Job's order, less what the claim has just set (Job.from_claim fills those in).
    assert [name for name in JOB_COLUMN_TYPES if name in read] == read
    assert set(JOB_COLUMN_TYPES) - set(read) == {"status", "heartbeat", "worker_id", "started"}


def test_every_statement_is_named_once() -> None:
    names = list(templates())
    assert len(names) == len(set(names))
