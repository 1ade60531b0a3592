"""The reference example for async code: 1000 jobs, async def handler; Ctrl-C stops gracefully.

Run `pgq-sync install` once first. The connection comes from libpq's environment variables
(PGHOST, PGUSER, PGDATABASE, ...); the queue's schema from PGQUEUE_SCHEMA (default public).

    python examples/asyncio_app.py          # asyncio
    python examples/asyncio_app.py --trio   # the same code on trio
"""

import asyncio
import signal
import sys

import anyio
import psycopg

from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.models import Job
from pgqueue_sync_aio import AsyncQueueManager


async def some_async_io(payload: bytes | None) -> None:
    await anyio.sleep(0.001)  # stands in for an HTTP call, a database query, ...


async def stop_on_signal(qm: AsyncQueueManager) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            qm.alive = False  # graceful shutdown
            return


async def main() -> None:
    qm = AsyncQueueManager(PsycopgDriver(psycopg.connect(autocommit=True)))

    @qm.entrypoint("fetch")
    async def process_message(job: Job) -> None:
        await some_async_io(job.payload)
        print(f"Processed message: {job}")

    N = 1_000
    await qm.queries.enqueue(
        ["fetch"] * N, [f"this is from me: {n}".encode() for n in range(N)], [0] * N
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(stop_on_signal, qm)
        await qm.run()  # until qm.alive = False
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    if "--trio" in sys.argv[1:]:
        anyio.run(main, backend="trio")
    else:
        asyncio.run(main())
