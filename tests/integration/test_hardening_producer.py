"""The producer side under adversarial use: unique jobs racing a worker, typed errors for
every bad argument, concurrent installs, handlers that cannot take a job, unknown ids."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgqueue_sync import Job, PsycopgDriver, Queries, QueueManager, Settings
from tests.conftest import Runner


def count_jobs(conn: psycopg.Connection[Any], settings: Settings, entrypoint: str) -> int:
    """Jobs of ``entrypoint`` ever written: in the queue, or finished and logged."""
    row = conn.execute(
        sql.SQL(
            "SELECT (SELECT count(*) FROM {jobs} WHERE entrypoint = %(e)s)"
            " + (SELECT count(*) FROM {log} WHERE entrypoint = %(e)s)"
        ).format(jobs=settings.ident("jobs"), log=settings.ident("log")),
        {"e": entrypoint},
    ).fetchone()
    assert row is not None
    return int(row[0])


def known_ids(conn: psycopg.Connection[Any], settings: Settings, ids: list[int]) -> set[int]:
    rows = conn.execute(
        sql.SQL(
            "SELECT id FROM {jobs} WHERE id = ANY(%(ids)s)"
            " UNION SELECT job_id FROM {log} WHERE job_id = ANY(%(ids)s)"
        ).format(jobs=settings.ident("jobs"), log=settings.ident("log")),
        {"ids": ids},
    ).fetchall()
    return {row[0] for row in rows}


# -- on_conflict="skip" against a worker finishing the key's holder ------------------------


def test_skip_never_raises_after_committing_while_a_worker_finishes_holders(
    qm: QueueManager, dsn: str, settings: Settings, runner: Callable[..., Runner]
) -> None:
    @qm.entrypoint("k")
    def k(job: Job) -> None:
        pass

    @qm.entrypoint("x")
    def x(job: Job) -> None:
        pass

    r = runner(qm, workers=2, batch_size=1, dequeue_timeout=1)
    producer = Queries(PsycopgDriver(dsn), settings)
    returned: list[list[int]] = []
    errors: list[BaseException] = []
    deadline = time.monotonic() + 20
    try:
        for _ in range(3000):
            if time.monotonic() > deadline:
                break
            try:
                ids = producer.enqueue(
                    ["k", "x"], [None, None], dedupe_key=["samekey", None], on_conflict="skip"
                )
            except Exception as exc:
                errors.append(exc)
            else:
                returned.append(ids)
    finally:
        r.stop()
        producer.driver.close()
    with psycopg.connect(dsn, autocommit=True) as conn:
        x_written = count_jobs(conn, settings, "x")
        k_ids = [ids[0] for ids in returned]
        unknown = set(k_ids) - known_ids(conn, settings, k_ids)
    assert not errors, (
        f"{len(errors)} of {len(errors) + len(returned)} calls raised "
        f"({type(errors[0]).__name__}: {errors[0]}); {x_written - len(returned)} of them "
        "after their 'x' job had been committed"
    )
    assert all(len(ids) == 2 for ids in returned)
    assert x_written == len(returned), "a call that raised had committed its 'x' job"
    assert not unknown, f"ids returned for skipped jobs that never existed: {sorted(unknown)}"


class _HookCursor(psycopg.Cursor[Any]):
    """A cursor that runs ``hook`` once, right after the first INSERT it executes: the
    caller's own connection, as any application could pass to ``enqueue(connection=)``."""

    hook: Callable[[], None] | None = None

    def execute(self, query: Any, params: Any = None, **kwargs: Any) -> Any:
        result = super().execute(query, params, **kwargs)
        text = query if isinstance(query, bytes) else str(query).encode()
        hook = type(self).hook
        if hook is not None and b"INSERT" in text:
            type(self).hook = None
            hook()
        return result


@pytest.mark.parametrize("in_transaction", [False, True], ids=["autocommit", "transaction"])
def test_skip_when_the_holder_finishes_between_insert_and_look_up(
    qm: QueueManager, dsn: str, settings: Settings, in_transaction: bool
) -> None:
    [holder] = qm.queries.enqueue("k", None, dedupe_key="samekey")
    other = Queries(PsycopgDriver(dsn), settings, known_entrypoints=None)

    def finish_holder() -> None:  # another session: the key is free from now on
        assert other.cancel([holder]).canceled == [holder]

    with psycopg.connect(dsn, autocommit=True, cursor_factory=_HookCursor) as conn:
        _HookCursor.hook = finish_holder
        try:
            if in_transaction:
                with conn.transaction():
                    ids = qm.queries.enqueue(
                        ["k", "x"],
                        [None, None],
                        dedupe_key=["samekey", None],
                        on_conflict="skip",
                        connection=conn,
                    )
            else:
                ids = qm.queries.enqueue(
                    ["k", "x"],
                    [None, None],
                    dedupe_key=["samekey", None],
                    on_conflict="skip",
                    connection=conn,
                )
        finally:
            _HookCursor.hook = None
            other.driver.close()
    # The holder finished before the look-up: the skipped job was inserted after all, and
    # its new id is returned.
    k_id, x_id = ids
    assert k_id != holder
    jobs = {job.id: job for job in qm.queries.get_jobs([k_id, x_id])}
    assert jobs[k_id].dedupe_key == "samekey"
    assert jobs[k_id].entrypoint == "k"
    assert jobs[x_id].entrypoint == "x"
    with psycopg.connect(dsn, autocommit=True) as check:
        assert count_jobs(check, settings, "x") == 1
        assert count_jobs(check, settings, "k") == 2  # the cancelled holder, the new job


def test_skip_returns_the_holder_and_dedupes_within_one_call(qm: QueueManager) -> None:
    [holder] = qm.queries.enqueue("k", None, dedupe_key="a")
    ids = qm.queries.enqueue(
        ["k", "k", "k", "k"],
        [None] * 4,
        dedupe_key=["a", "b", "b", None],
        on_conflict="skip",
    )
    assert ids[0] == holder
    assert ids[1] == ids[2] != holder
    assert len(set(ids)) == 3
