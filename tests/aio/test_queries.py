"""AsyncQueries: each sync Queries method, awaitable, under a limiter sized to the connections."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta
from typing import Any

import anyio
import psycopg
import pytest
from psycopg_pool import ConnectionPool

from pgqueue_sync import JobStatus, PsycopgDriver, Queries, Settings
from pgqueue_sync.engine.store import Store
from pgqueue_sync.models import Outcome, QueueStatistic
from pgqueue_sync_aio import AsyncQueries, AsyncQueueManager
from pgqueue_sync_aio.queries import connections_of
from tests.aio.conftest import RecordingDriver


class FakeDriver:
    """A Driver that is not a PsycopgDriver (never used to connect here)."""

    stall_timeout = 60.0
    transaction_pooling = False
    can_listen = True

    def connection(self) -> Any:
        raise NotImplementedError

    def connect(self, role: str) -> Any:
        raise NotImplementedError

    def connect_listener(self, role: str) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_limiter_size_follows_the_driver(dsn: str, settings: Settings) -> None:
    pool: ConnectionPool[Any] = ConnectionPool(dsn, min_size=1, max_size=3, open=False)
    assert connections_of(PsycopgDriver(pool)) == 3
    assert connections_of(PsycopgDriver(dsn)) == 1
    assert connections_of(FakeDriver()) == 1

    async def limits() -> tuple[float, float, float]:
        over_pool = AsyncQueueManager(PsycopgDriver(pool), settings=settings)
        over_string = AsyncQueries(Queries(PsycopgDriver(dsn), settings))
        explicit = AsyncQueries(Queries(PsycopgDriver(dsn), settings), max_threads=7)
        return (
            over_pool.queries.limiter.total_tokens,
            over_string.limiter.total_tokens,
            explicit.limiter.total_tokens,
        )

    assert anyio.run(limits) == (3, 1, 7)


def test_one_instance_serves_successive_event_loops(dsn: str, settings: Settings) -> None:
    driver = PsycopgDriver(dsn)  # opens a connection of its own
    queries = AsyncQueries(Queries(driver, settings))
    limiters = []

    async def use() -> list[QueueStatistic]:
        limiters.append(queries.limiter)
        return await queries.queue_size()

    try:
        queries.sync.install()
        assert anyio.run(use, backend="asyncio") == []
        assert anyio.run(use, backend="trio") == []
        assert anyio.run(use, backend="asyncio") == []
    finally:
        driver.close()
    assert len({id(limiter) for limiter in limiters}) == 3


class CountingQueries(Queries):
    """Counts queue_size() calls running at once; the first two wait for each other."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lock = threading.Lock()
        self.calls = 0
        self.running = 0
        self.most = 0
        self.barrier = threading.Barrier(2, timeout=30)

    def queue_size(self) -> list[QueueStatistic]:
        with self.lock:
            self.calls += 1
            first_two = self.calls <= 2
            self.running += 1
            self.most = max(self.most, self.running)
        try:
            if first_two:
                self.barrier.wait()  # two calls run at once, or this breaks
            return super().queue_size()
        finally:
            with self.lock:
                self.running -= 1


@pytest.mark.anyio
async def test_calls_run_in_threads_no_more_at_once_than_connections(
    dsn: str, settings: Settings
) -> None:
    with ConnectionPool(dsn, min_size=1, max_size=2) as pool:
        sync = CountingQueries(PsycopgDriver(pool), settings)
        sync.install()
        queries = AsyncQueries(sync)
        results: list[list[QueueStatistic]] = []

        async def call() -> None:
            results.append(await queries.queue_size())

        async with anyio.create_task_group() as tg:
            for _ in range(20):
                tg.start_soon(call)
        assert results == [[]] * 20
        assert sync.most == 2
        assert not sync.barrier.broken


@pytest.mark.anyio
async def test_every_method_round_trips(
    driver: PsycopgDriver, settings: Settings, conn: psycopg.Connection[Any]
) -> None:
    queries = AsyncQueries(Queries(driver, settings))
    assert await queries.install() == await queries.install()
    version = await queries.verify()
    assert version >= 1

    ids = await queries.enqueue(["a", "a", "b"], [b"1", b"2", None], [0, 5, 0])
    assert len(ids) == 3
    with conn.transaction():
        [in_tx] = await queries.enqueue("b", b"tx", connection=conn)
    assert {s.entrypoint: s.count for s in await queries.queue_size()} == {"a": 2, "b": 2}
    jobs = await queries.get_jobs(ids)
    assert sorted(j.id for j in jobs) == sorted(ids)
    await queries.notify("ping")

    # A worker (the engine's own statements, sync) claims two jobs, finishes one and gives
    # the other back: what the async methods then read.
    store = Store(driver, settings)
    worker = uuid.uuid4()
    done, back = store.dequeue(2, ["a"], worker)
    outcome = Outcome(done.id, done.attempts, JobStatus.SUCCESSFUL, 0.01, result=b"r")
    assert store.complete(worker, [outcome]).finished == {done.id}
    assert store.release(worker, {back.id}, {back.id}) == {back.id}
    [entry] = await queries.log(entrypoint="a", status=JobStatus.SUCCESSFUL, job_ids=[done.id])
    assert entry.result == b"r"
    [result] = await queries.wait_for([done.id], timeout=5)
    assert result.result == b"r"
    assert (await queries.history(job_ids=[done.id]))[0].job_id == done.id
    assert (await queries.cancel([back.id])).canceled == [back.id]
    assert await queries.requeue([back.id]) == []
    assert await queries.prune_log(timedelta(days=1)) == 0

    assert await queries.clear_queue("b") == 2
    assert in_tx not in {j.id for j in await queries.get_jobs([in_tx])}
    assert await queries.clear_queue() == 0  # the released job was cancelled above
    await queries.uninstall()


@pytest.mark.anyio
async def test_cancelled_wait_for_closes_its_connection(
    aqm: AsyncQueueManager, driver: RecordingDriver
) -> None:
    [job_id] = await aqm.queries.enqueue("nobody", b"x")  # no worker: it never finishes
    with anyio.CancelScope() as scope:

        async def cancel_once_waiting() -> None:
            assert await anyio.to_thread.run_sync(driver.connected.wait, 10.0)
            scope.cancel()

        async with anyio.create_task_group() as tg:
            tg.start_soon(cancel_once_waiting)
            await aqm.queries.wait_for([job_id], timeout=600)
    assert scope.cancelled_caught
    [waiting] = driver.opened
    # Without the stop signal the thread would hold this connection for the full 600 s.
    # psycopg has no close event to wait on: look until it is closed.
    with anyio.fail_after(10):
        while not waiting.closed:
            await anyio.sleep(0.01)
