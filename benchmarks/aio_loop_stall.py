"""The largest event-loop stall while AsyncQueueManager runs 1000 async jobs.

A ticker task sleeps 1 ms in a loop and records the longest gap between two ticks, while
``await qm.run()`` processes the jobs (async handlers on the same loop); the stall is that
gap minus the 1 ms asked for. Also printed: how long ``run()`` takes to return after
``qm.alive = False``.

    python benchmarks/aio_loop_stall.py [--dsn DSN] [--jobs 1000] [--runs 5] [--workers N]

The database is PGQUEUE_DSN, else 127.0.0.1:5432 (user postgres, database test); each run
uses a fresh schema, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid

import anyio
import psycopg

from pgqueue_sync import Job, PsycopgDriver, Settings
from pgqueue_sync_aio import AsyncQueueManager

TICK = 0.001


async def one_run(dsn: str, jobs: int, workers: int | None) -> tuple[float, float, float, int]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    conn = psycopg.connect(dsn, autocommit=True)
    try:
        qm = AsyncQueueManager(PsycopgDriver(conn), settings=Settings(schema=schema))
        await qm.queries.install()
        done = anyio.Event()
        count = 0

        @qm.entrypoint("fetch")
        async def process_message(job: Job) -> None:
            nonlocal count
            await anyio.sleep(0)  # stands in for the handler's async I/O
            count += 1
            if count == jobs:
                done.set()

        await qm.queries.enqueue(["fetch"] * jobs, [b"payload"] * jobs, [0] * jobs)
        gaps: list[float] = []
        stopped_at = 0.0

        async def ticker() -> None:
            last = time.perf_counter()
            while True:
                await anyio.sleep(TICK)
                now = time.perf_counter()
                gaps.append(now - last)
                last = now

        async def stop_when_done() -> None:
            nonlocal stopped_at
            await done.wait()
            stopped_at = time.perf_counter()
            qm.alive = False

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(ticker)
            tg.start_soon(stop_when_done)
            await qm.run(workers=workers)
            returned = time.perf_counter()
            tg.cancel_scope.cancel()
        return max(gaps) - TICK, stopped_at - started, returned - stopped_at, len(gaps)
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--dsn",
        default=os.environ.get("PGQUEUE_DSN", "host=127.0.0.1 port=5432 user=postgres dbname=test"),
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args()
    for backend in ("asyncio", "trio"):
        results = [
            anyio.run(one_run, args.dsn, args.jobs, args.workers, backend=backend)
            for _ in range(args.runs)
        ]
        stalls = [r[0] * 1000 for r in results]
        print(
            f"{backend:8} {args.jobs} jobs x {args.runs} runs: "
            f"max loop stall {max(stalls):.1f} ms (median of runs {statistics.median(stalls):.1f}"
            f" ms); jobs took {statistics.median(r[1] for r in results):.2f} s; "
            f"run() returned {max(r[2] for r in results) * 1000:.0f} ms after alive = False "
            f"(worst); {min(r[3] for r in results)} ticks or more per run"
        )


if __name__ == "__main__":
    main()
