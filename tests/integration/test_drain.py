"""drain() and TemporaryQueue: every due job run now, in the test's thread, by the engine."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import anyio
import anyio.to_thread
import psycopg
import pytest
from tenacity import stop_after_attempt, wait_fixed, wait_none

from pgqueue_sync import (
    Job,
    JobStatus,
    PsycopgDriver,
    QueueManager,
    RetryPolicy,
    Settings,
    current_context,
)
from pgqueue_sync.testing import DrainLimitError, TemporaryQueue, drain
from pgqueue_sync_aio import AsyncQueueManager


@pytest.fixture
def queue(dsn: str) -> Iterator[TemporaryQueue]:
    temporary = TemporaryQueue(dsn)
    yield temporary
    temporary.close()


def schema_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT count(*) FROM pg_namespace WHERE nspname = %s", (name,)).fetchone()
    return row is not None and row[0] == 1


def test_drain_runs_due_jobs_here_and_reports_each(qm: QueueManager) -> None:
    threads: set[int] = set()

    @qm.entrypoint("echo")
    def echo(job: Job) -> bytes:
        threads.add(threading.get_ident())
        assert current_context().job.id == job.id
        return job.payload or b""

    @qm.task(name="later")
    def later() -> str:
        return "ran"

    ids = qm.queries.enqueue(["echo", "echo"], [b"a", b"b"])
    deferred = later.enqueue(execute_after=timedelta(hours=1))
    outcomes = drain(qm)
    assert [(o.job.id, o.status, o.result, o.ok) for o in outcomes] == [
        (ids[0], JobStatus.SUCCESSFUL, b"a", True),
        (ids[1], JobStatus.SUCCESSFUL, b"b", True),
    ]
    assert threads == {threading.get_ident()}
    # The outcomes were written: the log and wait_for see them; the deferred job waits.
    assert [r.result for r in qm.queries.wait_for(ids, timeout=5)] == [b"a", b"b"]
    assert [j.id for j in qm.queries.get_jobs([deferred])] == [deferred]


def test_retries_due_at_once_run_and_those_with_a_wait_stay_queued(qm: QueueManager) -> None:
    attempts: list[int] = []

    @qm.task(name="twice", retry=RetryPolicy(stop=stop_after_attempt(2), wait=wait_none()))
    def twice() -> str:
        attempts.append(current_context().attempt)
        if len(attempts) == 1:
            raise RuntimeError("first attempt")
        return "second"

    @qm.task(name="slow_retry", retry=RetryPolicy(wait=wait_fixed(600)))
    def slow_retry() -> None:
        raise RuntimeError("again later")

    twice.enqueue()
    waiting = slow_retry.enqueue()
    outcomes = drain(qm)
    statuses = [(o.job.entrypoint, o.job.attempts, o.status) for o in outcomes]
    assert sorted(statuses) == [
        ("slow_retry", 1, JobStatus.QUEUED),
        ("twice", 1, JobStatus.QUEUED),
        ("twice", 2, JobStatus.SUCCESSFUL),
    ]
    retried = next(o for o in outcomes if o.job.id == waiting)
    assert retried.retry_in == pytest.approx(600, abs=1)
    assert isinstance(retried.error, RuntimeError)
    assert [j.status for j in qm.queries.get_jobs([waiting])] == [JobStatus.QUEUED]


def test_raise_errors_raises_the_handlers_own_exception(qm: QueueManager) -> None:
    class Boom(Exception):
        pass

    error = Boom("the handler's")

    @qm.task(name="boom")
    def boom() -> None:
        raise error

    job_id = boom.enqueue()
    with pytest.raises(Boom) as info:
        drain(qm, raise_errors=True)
    assert info.value is error
    # Its outcome was written before it was raised.
    assert qm.queries.wait_for([job_id], timeout=5)[0].status is JobStatus.EXCEPTION


def test_jobs_that_never_stop_coming_end_the_drain(qm: QueueManager) -> None:
    @qm.task(name="forever")
    def forever() -> None:
        forever.enqueue()

    forever.enqueue()
    with pytest.raises(DrainLimitError) as info:
        drain(qm, max_jobs=5)
    assert len(info.value.outcomes) == 6


def test_use_points_an_application_manager_at_the_queue_until_close(
    dsn: str, conn: psycopg.Connection[Any]
) -> None:
    app_driver = PsycopgDriver("host=127.0.0.1 port=1 dbname=never_used")  # a closed port
    app = QueueManager(app_driver)

    @app.task(name="square")
    def square(n: int) -> int:
        return n * n

    queue = TemporaryQueue(dsn)
    try:
        assert queue.use(app) is app
        job_id = square.enqueue(7)
        assert [o.value for o in queue.drain(app)] == [49]
        assert app.queries.wait_for([job_id], timeout=5)[0].value == 49
        assert schema_exists(conn, queue.schema)
    finally:
        queue.close()
    assert app.driver is app_driver
    assert app.settings == Settings()
    assert not schema_exists(conn, queue.schema)


def test_async_handlers_run_on_a_loop_of_their_own_from_a_sync_test(
    queue: TemporaryQueue,
) -> None:
    aqm = queue.use(AsyncQueueManager(queue.driver, settings=queue.settings))

    @aqm.task(name="double")
    async def double(n: int) -> int:
        await anyio.sleep(0)
        return n * 2

    ids = [anyio.run(double.enqueue, n) for n in (1, 2)]
    assert [o.value for o in queue.drain(aqm)] == [2, 4]
    assert sorted(o.job.id for o in queue.drain(aqm)) == []
    assert ids == sorted(ids)


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio", "trio"])
async def test_async_handlers_run_on_the_tests_loop_through_to_thread(
    queue: TemporaryQueue,
) -> None:
    aqm = queue.use(AsyncQueueManager(queue.driver, settings=queue.settings))
    loops: list[object] = []

    @aqm.task(name="where")
    async def where() -> None:
        loops.append(anyio.lowlevel.current_token())

    await where.enqueue()
    outcomes = await anyio.to_thread.run_sync(queue.drain, aqm)
    assert [o.status for o in outcomes] == [JobStatus.SUCCESSFUL]
    assert loops == [anyio.lowlevel.current_token()]
