"""The producer side under adversarial use: unique jobs racing a worker, typed errors for
every bad argument, concurrent installs, handlers that cannot take a job, unknown ids."""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from pgqueue_sync import (
    AlreadyRunningError,
    ConfigurationError,
    InvalidEntrypointError,
    InvalidStateError,
    Job,
    PsycopgDriver,
    Queries,
    QueueManager,
    Settings,
)
from pgqueue_sync.queries import COPY_THRESHOLD
from pgqueue_sync_aio import AsyncQueueManager
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


# -- typed errors at enqueue, before anything is written ------------------------------------


def _nothing_written(qm: QueueManager) -> bool:
    return qm.queries.queue_size() == []


@pytest.mark.parametrize("n", [1, COPY_THRESHOLD], ids=["insert", "copy"])
@pytest.mark.parametrize(
    "when",
    [
        timedelta.max,
        timedelta.min,
        timedelta(days=365 * 8000),
        datetime.max.replace(tzinfo=timezone.utc),
        datetime.min.replace(tzinfo=timezone(timedelta(hours=-1))),
    ],
    ids=["timedelta.max", "timedelta.min", "8000 years", "datetime.max", "datetime.min"],
)
def test_an_execute_after_postgresql_cannot_hold_is_refused_on_both_paths(
    qm: QueueManager, n: int, when: Any
) -> None:
    @qm.entrypoint("a")
    def a(job: Job) -> None:
        pass

    whens = [None] * (n - 1) + [when]
    with pytest.raises(ConfigurationError, match=f"execute_after #{n - 1}"):
        qm.queries.enqueue(["a"] * n, [None] * n, 0, whens)
    with pytest.raises(ConfigurationError, match="execute_after #0"):
        qm.queries.enqueue(["a"] * n, [None] * n, 0, when)
    assert _nothing_written(qm)


def test_far_but_storable_times_are_accepted(qm: QueueManager) -> None:
    @qm.entrypoint("a")
    def a(job: Job) -> None:
        pass

    far = datetime(9000, 1, 1, tzinfo=timezone.utc)
    ids = qm.queries.enqueue(["a", "a"], [None, None], 0, [timedelta(days=365 * 500), far])
    ids += qm.queries.enqueue(["a"] * COPY_THRESHOLD, [None] * COPY_THRESHOLD, 0, far)
    assert len(qm.queries.get_jobs(ids)) == len(ids)


def _cycle() -> dict[str, Any]:
    d: dict[str, Any] = {"a": 1}
    d["self"] = d
    return d


@pytest.mark.parametrize(
    "bad",
    [
        {"at": datetime(2024, 1, 1, tzinfo=timezone.utc)},
        {"blob": b"\x00\x01"},
        {("a", "b"): 1},
        {datetime(2024, 1, 1): 1},
        {b"key": 1},
        _cycle(),
        {"ratio": math.nan},
        {"big": math.inf},
        {"text": "a\x00b"},
        {"a\x00": "text"},
        {"text": b"\xff".decode("utf-8", "surrogateescape")},
        {"nested": [{"deep": {"x": "\ud800"}}]},
        {"obj": object()},
    ],
    ids=repr,
)
@pytest.mark.parametrize("n", [1, COPY_THRESHOLD], ids=["insert", "copy"])
def test_headers_postgresql_cannot_store_are_refused_naming_the_job(
    qm: QueueManager, bad: dict[Any, Any], n: int
) -> None:
    @qm.entrypoint("a")
    def a(job: Job) -> None:
        pass

    headers: list[dict[Any, Any] | None] = [{"ok": 1}] * n
    headers[n - 1] = bad
    with pytest.raises(ConfigurationError, match=f"headers #{n - 1}"):
        qm.queries.enqueue(["a"] * n, [None] * n, headers=headers)
    with pytest.raises(ConfigurationError, match="headers #0"):
        qm.queries.enqueue(["a"] * n, [None] * n, headers=bad)
    assert _nothing_written(qm)


@pytest.mark.parametrize(
    "key",
    ["a\x00b", b"\xff".decode("utf-8", "surrogateescape"), "\ud800"],
    ids=["nul", "surrogateescape", "lone surrogate"],
)
@pytest.mark.parametrize("on_conflict", ["raise", "skip"])
def test_a_dedupe_key_postgresql_cannot_store_is_refused(
    qm: QueueManager, key: str, on_conflict: Any
) -> None:
    @qm.entrypoint("a")
    def a(job: Job) -> None:
        pass

    with pytest.raises(ConfigurationError, match="dedupe_key #1"):
        qm.queries.enqueue(
            ["a", "a"], [None, None], dedupe_key=["fine", key], on_conflict=on_conflict
        )
    assert _nothing_written(qm)


@pytest.mark.parametrize("name", ["a\x00b", "\ud800", "é"])
def test_an_entrypoint_postgresql_cannot_store_is_refused(
    driver: PsycopgDriver, settings: Settings, qm: QueueManager, name: str
) -> None:
    producer = Queries(driver, settings)  # a pure producer: no registry to check names against
    with pytest.raises(InvalidEntrypointError):
        producer.enqueue(name, None)
    assert _nothing_written(qm)


# -- state errors ----------------------------------------------------------------------------


def test_run_twice_and_alive_while_stopping_are_typed_errors(
    qm: QueueManager, runner: Callable[..., Runner]
) -> None:
    started, release = threading.Event(), threading.Event()

    @qm.entrypoint("x")
    def handler(job: Job) -> None:
        started.set()
        release.wait(30)

    qm.queries.enqueue("x", None)
    r = runner(qm, workers=1)
    try:
        assert started.wait(30)
        with pytest.raises(AlreadyRunningError, match="already running") as info:
            qm.run()
        assert isinstance(info.value, RuntimeError)
        qm.alive = False  # stopping: the handler still runs
        with pytest.raises(InvalidStateError, match="stopping") as state:
            qm.alive = True
        assert isinstance(state.value, RuntimeError)
    finally:
        release.set()
    r.join()


def test_the_async_run_twice_is_a_typed_error(driver: PsycopgDriver, settings: Settings) -> None:
    aqm = AsyncQueueManager(driver, settings=settings)

    async def main() -> None:
        await aqm.queries.install()
        running = anyio.Event()

        @aqm.entrypoint("x")
        async def handler(job: Job) -> None:
            running.set()

        await aqm.queries.enqueue("x", None)
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(aqm.run)
                await running.wait()
                with pytest.raises(AlreadyRunningError) as info:
                    await aqm.run()
                assert isinstance(info.value, RuntimeError)
                aqm.alive = False

    anyio.run(main)


# -- concurrent installs ---------------------------------------------------------------------


def test_concurrent_installs_with_different_prefixes_into_one_new_schema(
    dsn: str, schema: str
) -> None:
    prefixes = ["a_", "b_", "c_", "d_"]
    barrier = threading.Barrier(len(prefixes))
    errors: list[BaseException] = []
    versions: list[int] = []

    def install(prefix: str) -> None:
        driver = PsycopgDriver(dsn)
        try:
            queries = Queries(driver, Settings(schema=schema, prefix=prefix))
            barrier.wait(30)
            versions.append(queries.install())
        except BaseException as exc:
            errors.append(exc)
        finally:
            driver.close()

    threads = [threading.Thread(target=install, args=(p,)) for p in prefixes]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not any(thread.is_alive() for thread in threads)
    assert not errors, [str(e) for e in errors]
    assert len(versions) == len(prefixes)
    with psycopg.connect(dsn, autocommit=True) as conn:
        for prefix in prefixes:
            assert Queries(PsycopgDriver(conn), Settings(schema=schema, prefix=prefix)).verify()


# -- cancel says which ids it could not cancel, and why -------------------------------------


def test_cancel_reports_unknown_and_finished_ids(
    qm: QueueManager, runner: Callable[..., Runner]
) -> None:
    started, release = threading.Event(), threading.Event()

    @qm.entrypoint("run")
    def run(job: Job) -> None:
        started.set()
        release.wait(30)

    @qm.entrypoint("quick")
    def quick(job: Job) -> None:
        pass

    [done] = qm.queries.enqueue("quick", None)
    r = runner(qm, workers=2)
    try:
        qm.queries.wait_for([done], timeout=30)
        [running] = qm.queries.enqueue("run", None)
        [queued] = qm.queries.enqueue("quick", None, execute_after=timedelta(hours=1))
        assert started.wait(30)
        result = qm.queries.cancel([99999999, done, running, queued, 99999998])
    finally:
        release.set()
        r.stop()
    assert result.canceled == [queued]
    assert result.requested == [running]
    assert result.finished == [done]
    assert result.unknown == [99999998, 99999999]
    assert qm.queries.cancel([]).unknown == []


def test_cancel_of_unknown_ids_alone(qm: QueueManager) -> None:
    result = qm.queries.cancel([424242])
    assert (result.canceled, result.requested, result.finished, result.unknown) == (
        [],
        [],
        [],
        [424242],
    )
