"""AsyncQueueManager.run(): the issue's example, alive, cancellation, errors, on both loops."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

import anyio
import psycopg
import pytest

from pgqueue_sync import (
    ConfigurationError,
    Context,
    Job,
    JobStatus,
    SchemaNotInstalledError,
    Settings,
    current_context,
)
from pgqueue_sync_aio import AsyncQueueManager
from tests.aio.conftest import RecordingDriver, Ticker, engine_threads, picked, worker_sessions

pytestmark = pytest.mark.anyio

# Every run in these tests is bounded by this guard: a hang fails the test instead of the
# suite. It is never what a test measures.
HANG_GUARD = 60


async def test_the_issue_example_processes_1000_jobs_exactly_once(
    aqm: AsyncQueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    driver: RecordingDriver,
    threads_before: set[threading.Thread],
) -> None:
    n = 1000
    seen: list[int] = []
    handler_threads: set[int] = set()
    all_done = anyio.Event()
    ticker = Ticker()
    ticks_at_first: list[int] = []

    @aqm.entrypoint("fetch")
    async def process_message(job: Job) -> None:
        handler_threads.add(threading.get_ident())
        if not ticks_at_first:
            ticks_at_first.append(ticker.ticks)
        if len(seen) % 100 == 0:
            await ticker.next_tick()  # the loop serves other tasks while jobs run
        seen.append(job.id)
        if len(seen) == n:
            all_done.set()

    ids = await aqm.queries.enqueue(
        ["fetch"] * n, [f"this is from me: {i}".encode() for i in range(n)], [0] * n
    )
    ticks_during = 0
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker.run)

            async def stop_when_done() -> None:
                nonlocal ticks_during
                await all_done.wait()
                ticks_during = ticker.ticks - ticks_at_first[0]
                aqm.alive = False

            tg.start_soon(stop_when_done)
            await aqm.run()
            tg.cancel_scope.cancel()

    assert sorted(seen) == sorted(ids)
    assert len(set(seen)) == n
    assert handler_threads == {threading.get_ident()}  # async handlers ran on this loop
    assert ticks_during >= 10
    assert await aqm.queries.queue_size() == []
    log = await aqm.queries.log(limit=2 * n)
    assert len(log) == n
    assert Counter(e.status for e in log) == {JobStatus.SUCCESSFUL: n}
    assert picked(conn, settings) == 0
    assert engine_threads(threads_before) == []
    assert worker_sessions(conn, driver) == (0, 0)
    assert aqm.last_stats is not None
    assert aqm.last_stats.succeeded == n


def make_slow(aqm: AsyncQueueManager, ledger: list[int], enough: anyio.Event, k: int) -> None:
    @aqm.entrypoint("slow")
    async def slow(job: Job) -> None:
        await anyio.sleep(0.005)  # the work itself, not synchronisation
        ledger.append(job.id)
        if len(ledger) >= k:
            enough.set()


async def test_cancelling_run_mid_work_finishes_what_it_holds_and_reraises(
    aqm: AsyncQueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    driver: RecordingDriver,
    threads_before: set[threading.Thread],
) -> None:
    n = 400
    first: list[int] = []
    enough = anyio.Event()
    make_slow(aqm, first, enough, 50)
    ids = await aqm.queries.enqueue(["slow"] * n, [None] * n)
    cancelled = False

    async def worker() -> None:
        nonlocal cancelled
        try:
            await aqm.run(workers=4, batch_size=5)
        except anyio.get_cancelled_exc_class():
            cancelled = True
            raise

    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(worker)
            await enough.wait()
            tg.cancel_scope.cancel()

    assert cancelled  # run() re-raised the cancellation, after shutting down
    assert aqm.alive is False
    assert picked(conn, settings) == 0
    assert engine_threads(threads_before) == []
    assert worker_sessions(conn, driver) == (0, 0)
    assert 50 <= len(first) < n
    # What it had claimed finished and was recorded; nothing else ran.
    assert {e.job_id for e in await aqm.queries.log(limit=n)} == set(first)

    second: list[int] = []
    again = AsyncQueueManager(driver, settings=settings)
    make_slow(again, second, anyio.Event(), n)
    with anyio.fail_after(HANG_GUARD):
        await again.run(workers=8, mode="drain")
    assert Counter(first + second) == Counter(dict.fromkeys(ids, 1))
    assert await again.queries.queue_size() == []


async def test_cancelling_past_shutdown_timeout_releases_jobs_and_cancels_their_handlers(
    aqm: AsyncQueueManager,
    conn: psycopg.Connection[Any],
    settings: Settings,
    driver: RecordingDriver,
    threads_before: set[threading.Thread],
) -> None:
    entered = anyio.Event()
    handlers_cancelled = 0

    @aqm.entrypoint("stuck")
    async def stuck(job: Job) -> None:
        nonlocal handlers_cancelled
        entered.set()
        try:
            await anyio.sleep_forever()
        finally:
            handlers_cancelled += 1

    ids = await aqm.queries.enqueue(["stuck"] * 5, [None] * 5)
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(
                lambda: aqm.run(workers=1, batch_size=5, buffer_size=5, shutdown_timeout=0.2)
            )
            await entered.wait()
            tg.cancel_scope.cancel()

    assert handlers_cancelled == 1
    assert picked(conn, settings) == 0
    jobs = await aqm.queries.get_jobs(ids)
    assert {j.status for j in jobs} == {JobStatus.QUEUED}
    assert sorted(j.attempts for j in jobs) == [0, 0, 0, 0, 1]
    assert await aqm.queries.log() == []  # the cancelled handler's outcome is not recorded
    assert engine_threads(threads_before) == []
    assert worker_sessions(conn, driver) == (0, 0)


async def test_alive_false_from_a_handler_stops_run(aqm: AsyncQueueManager) -> None:
    count = 0

    @aqm.entrypoint("x")
    async def handler(job: Job) -> None:
        nonlocal count
        count += 1
        if count == 3:
            aqm.alive = False

    await aqm.queries.enqueue(["x"] * 100, [None] * 100)
    with anyio.fail_after(HANG_GUARD):
        await aqm.run(workers=1, batch_size=1, buffer_size=1)
    assert aqm.alive is False
    assert 3 <= count < 100
    assert len(await aqm.queries.log(limit=200)) == count

    with anyio.fail_after(HANG_GUARD):
        await aqm.run()  # alive is False: returns at once
    assert len(await aqm.queries.log(limit=200)) == count
    aqm.alive = True
    with anyio.fail_after(HANG_GUARD):
        await aqm.run(mode="drain")
    assert len(await aqm.queries.log(limit=200)) == 100


async def test_failing_async_handlers_are_recorded_and_the_worker_survives(
    aqm: AsyncQueueManager,
) -> None:
    @aqm.entrypoint("raises")
    async def raises(job: Job) -> None:
        await anyio.sleep(0)
        raise ValueError("boom " + (job.payload or b"").decode())

    @aqm.entrypoint("exits")
    async def exits(job: Job) -> None:
        raise SystemExit(3)

    @aqm.entrypoint("ok")
    async def ok(job: Job) -> None:
        pass

    await aqm.queries.enqueue(["raises", "exits", "ok"], [b"one", None, None], [2, 1, 0])
    with anyio.fail_after(HANG_GUARD):
        await aqm.run(workers=1, batch_size=1, mode="drain")
    log = {e.entrypoint: e for e in await aqm.queries.log()}
    assert {name: e.status for name, e in log.items()} == {
        "raises": JobStatus.EXCEPTION,
        "exits": JobStatus.EXCEPTION,
        "ok": JobStatus.SUCCESSFUL,
    }
    tb = log["raises"].traceback or ""
    assert "ValueError: boom one" in tb
    assert "in raises" in tb  # the handler's own frame
    assert "SystemExit: 3" in (log["exits"].traceback or "")


async def test_keyboard_interrupt_in_an_async_handler_stops_run_gracefully_and_propagates(
    aqm: AsyncQueueManager, conn: psycopg.Connection[Any], settings: Settings
) -> None:
    # On the loop's thread a KeyboardInterrupt is Ctrl-C (trio raises it in running code).
    count = 0

    @aqm.entrypoint("kbd")
    async def handler(job: Job) -> None:
        nonlocal count
        count += 1
        if count == 2:
            raise KeyboardInterrupt

    await aqm.queries.enqueue(["kbd"] * 100, [None] * 100)
    with anyio.fail_after(HANG_GUARD), pytest.raises(KeyboardInterrupt):
        await aqm.run(workers=1, batch_size=2, buffer_size=2)
    assert aqm.alive is False
    assert picked(conn, settings) == 0
    log = await aqm.queries.log(limit=200)
    assert len(log) == count < 100
    assert Counter(e.status for e in log)[JobStatus.EXCEPTION] == 1


async def test_async_and_sync_handlers_context_and_results(aqm: AsyncQueueManager) -> None:
    loop_thread = threading.get_ident()
    seen: dict[str, Any] = {}

    @aqm.entrypoint("with_context")
    async def with_context(job: Job, ctx: Context) -> bytes:
        seen["ctx"] = (ctx.job.id == job.id, current_context() is ctx)
        seen["async_thread"] = threading.get_ident()
        return b"async result"

    @aqm.entrypoint("plain")
    def plain(job: Job) -> bytes:
        seen["sync_thread"] = threading.current_thread().name
        return b"sync result"

    assert aqm.entrypoints["with_context"].func is with_context
    assert aqm.entrypoints["with_context"].takes_context is True
    assert aqm.entrypoints["plain"].func is plain
    await aqm.queries.enqueue(["with_context", "plain"], [None, None])
    with anyio.fail_after(HANG_GUARD):
        await aqm.run(mode="drain")
    assert seen["ctx"] == (True, True)
    assert seen["async_thread"] == loop_thread
    assert seen["sync_thread"].startswith("pgqueue-sync-worker-")
    results = {e.entrypoint: e.result for e in await aqm.queries.log()}
    assert results == {"with_context": b"async result", "plain": b"sync result"}


async def test_engine_errors_are_raised_by_run(
    driver: RecordingDriver, settings: Settings, threads_before: set[threading.Thread]
) -> None:
    qm = AsyncQueueManager(driver, settings=settings)
    with pytest.raises(ConfigurationError, match="no entrypoint"):
        await qm.run()

    @qm.entrypoint("x")
    async def handler(job: Job) -> None:
        pass

    with pytest.raises(SchemaNotInstalledError, match="pgq-sync install"):
        await qm.run()
    with pytest.raises(ConfigurationError, match="batch_size"):
        await qm.run(batch_size=0)
    assert qm.alive is True
    assert engine_threads(threads_before) == []


async def test_run_is_not_reentrant(aqm: AsyncQueueManager) -> None:
    running = anyio.Event()

    @aqm.entrypoint("x")
    async def handler(job: Job) -> None:
        running.set()

    await aqm.queries.enqueue("x", None)
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(aqm.run)
            await running.wait()
            with pytest.raises(RuntimeError, match="already running"):
                await aqm.run()
            aqm.alive = False


async def test_cancelled_before_the_engine_starts(aqm: AsyncQueueManager) -> None:
    @aqm.entrypoint("x")
    async def handler(job: Job) -> None:
        pass

    with anyio.CancelScope() as scope:
        scope.cancel()
        await aqm.run()
    assert scope.cancelled_caught
    assert aqm.alive is False  # as after any cancellation
    await aqm.queries.enqueue("x", None)
    aqm.alive = True
    with anyio.fail_after(HANG_GUARD):
        await aqm.run(mode="drain")
    assert len(await aqm.queries.log()) == 1


async def test_cancelling_a_job_cancels_its_async_handler(aqm: AsyncQueueManager) -> None:
    started = anyio.Event()
    unwound: list[str] = []

    @aqm.entrypoint("long")
    async def long(job: Job) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        finally:
            unwound.append("cleanup ran")

    [job_id] = await aqm.queries.enqueue("long", None)
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(aqm.run)
            await started.wait()
            result = await aqm.queries.cancel([job_id])
            assert result.requested == [job_id]
            [final] = await aqm.queries.wait_for([job_id], timeout=HANG_GUARD)
            aqm.alive = False
    assert final.status is JobStatus.CANCELED
    assert unwound == ["cleanup ran"]


async def test_an_async_handler_past_its_timeout_is_cancelled(aqm: AsyncQueueManager) -> None:
    @aqm.entrypoint("slow", timeout=0.2)
    async def slow(job: Job) -> None:
        await anyio.sleep_forever()

    [job_id] = await aqm.queries.enqueue("slow", None)
    with anyio.fail_after(HANG_GUARD):
        async with anyio.create_task_group() as tg:
            tg.start_soon(aqm.run)
            [final] = await aqm.queries.wait_for([job_id], timeout=HANG_GUARD)
            aqm.alive = False
    assert final.status is JobStatus.EXCEPTION
    assert "JobTimeoutError" in (final.traceback or "")
    # run() joins its handler threads: it returned, so the cancelled handler let its go.
    assert aqm.last_stats is not None
    assert aqm.last_stats.timed_out == 1
