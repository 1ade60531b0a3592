"""Tasks on the async manager: ``await task.enqueue(...)``, ``async def`` tasks on the loop."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import pytest

from pgqueue_sync import Context, InvalidTaskArgumentsError, JobStatus, current_context
from pgqueue_sync_aio import AsyncQueueManager, AsyncTask

pytestmark = pytest.mark.anyio

HANG_GUARD = 60


async def test_async_and_plain_tasks_run_with_their_arguments(aqm: AsyncQueueManager) -> None:
    loop_thread = threading.get_ident()
    seen_threads: dict[str, int] = {}

    @aqm.task(name="fetch_page")
    async def fetch_page(url: str, *, retries: int = 0) -> dict[str, Any]:
        seen_threads["async"] = threading.get_ident()
        await anyio.sleep(0)
        return {"url": url, "retries": retries}

    @aqm.task
    def checksum(text: str, ctx: Context) -> list[Any]:
        seen_threads["plain"] = threading.get_ident()
        assert current_context() is ctx
        return [len(text), ctx.job.entrypoint]

    assert isinstance(fetch_page, AsyncTask)
    first = await fetch_page.enqueue("https://example.invalid/", retries=2)
    second = await checksum.enqueue("abc")
    with anyio.fail_after(HANG_GUARD):
        await aqm.run(mode="drain", workers=2)
        results = await aqm.queries.wait_for([first, second], timeout=10)
    assert [r.status for r in results] == [JobStatus.SUCCESSFUL] * 2
    assert results[0].value == {"url": "https://example.invalid/", "retries": 2}
    assert results[1].value == [3, "checksum"]
    assert seen_threads["async"] == loop_thread  # on this event loop
    assert seen_threads["plain"] != loop_thread  # in a handler thread
    # Plain calls run inline: the coroutine of an async def task is awaited by the caller.
    assert await fetch_page("u") == {"url": "u", "retries": 0}


async def test_bad_arguments_are_refused_when_enqueued(aqm: AsyncQueueManager) -> None:
    @aqm.task(name="add")
    async def add(a: int, b: int) -> int:
        return a + b

    with pytest.raises(InvalidTaskArgumentsError, match="missing a required argument"):
        await add.enqueue(1)
    with pytest.raises(InvalidTaskArgumentsError, match="is a set"):
        await add.enqueue({1}, 2)
    assert await aqm.queries.queue_size() == []
    job_id = await add.enqueue_with([1], {"b": 2}, priority=3)
    with anyio.fail_after(HANG_GUARD):
        await aqm.run(mode="drain")
        [result] = await aqm.queries.wait_for([job_id], timeout=10)
    assert result.value == 3
