"""The peer's side of the benchmarks, run with the peer's interpreter (pgqueuer, asyncpg).

    python benchmarks/peer_pgqueuer.py drain --dsn DSN --jobs N --batch-size B
    python benchmarks/peer_pgqueuer.py enqueue --dsn DSN --jobs N --list-size L
    python benchmarks/peer_pgqueuer.py latency --dsn DSN --samples N

Only pgqueuer's public API is used (QueueManager, entrypoint, Queries.install/enqueue,
run(batch_size=..., mode=drain)). Each call installs pgqueuer in a fresh schema (set
through PGQUEUER_SCHEMA before pgqueuer is imported), prints one JSON line, and drops the
schema. This file imports nothing from pgqueue_sync: the peer's virtualenv does not have it.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shlex
import statistics
import time
import uuid
from datetime import timedelta
from typing import Any

SCHEMA = f"bench_peer_{uuid.uuid4().hex[:8]}"
os.environ["PGQUEUER_SCHEMA"] = SCHEMA
os.environ["PGQUEUER_PREFIX"] = f"b{uuid.uuid4().hex[:6]}_"

import asyncpg  # noqa: E402
from pgqueuer import Queries, QueueManager  # noqa: E402
from pgqueuer.db import AsyncpgDriver  # noqa: E402
from pgqueuer.models import Job  # noqa: E402
from pgqueuer.types import QueueExecutionMode  # noqa: E402

ENTRYPOINT = "noop"


def connect_kwargs(dsn: str) -> dict[str, Any]:
    """asyncpg keywords from a libpq key=value conninfo (or a URI, passed as is)."""
    if "://" in dsn:
        return {"dsn": dsn}
    names = {"host": "host", "port": "port", "user": "user", "dbname": "database"}
    names["password"] = "password"
    out: dict[str, Any] = {}
    for part in shlex.split(dsn):
        key, _, value = part.partition("=")
        if key in names:
            out[names[key]] = int(value) if key == "port" else value
    return out


async def connect(dsn: str) -> asyncpg.Connection:
    return await asyncpg.connect(**connect_kwargs(dsn))


async def drop_schema(dsn: str) -> None:
    conn = await connect(dsn)
    try:
        await conn.execute(f'DROP SCHEMA IF EXISTS "{SCHEMA}" CASCADE')
    finally:
        await conn.close()


async def load(queries: Queries, jobs: int, list_size: int) -> None:
    left = jobs
    while left > 0:
        n = min(list_size, left)
        await queries.enqueue([ENTRYPOINT] * n, [None] * n, [0] * n)
        left -= n


async def vacuum_analyze(conn: asyncpg.Connection) -> None:
    """VACUUM ANALYZE the peer's tables, as the pgqueue-sync side does for its own."""
    tables = await conn.fetch("SELECT tablename FROM pg_tables WHERE schemaname = $1", SCHEMA)
    for row in tables:
        await conn.execute(f'VACUUM ANALYZE "{SCHEMA}"."{row["tablename"]}"')


async def drain(dsn: str, jobs: int, batch_size: int) -> dict[str, Any]:
    conn = await connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        await load(queries, jobs, 1000)
        await vacuum_analyze(conn)
    finally:
        await conn.close()
    conn = await connect(dsn)
    try:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        done = 0

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            nonlocal done
            done += 1

        started = time.perf_counter()
        await qm.run(
            dequeue_timeout=timedelta(seconds=1),
            batch_size=batch_size,
            mode=QueueExecutionMode.drain,
        )
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    if done != jobs:
        raise RuntimeError(f"drained {done} of {jobs} jobs")
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds}


async def enqueue(dsn: str, jobs: int, list_size: int) -> dict[str, Any]:
    conn = await connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        await load(queries, min(jobs, list_size), list_size)  # warm-up (prepared statements)
        started = time.perf_counter()
        await load(queries, jobs, list_size)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    return {"jobs": jobs, "list_size": list_size, "seconds": seconds, "jobs_per_s": jobs / seconds}


async def latency(dsn: str, samples: int) -> dict[str, Any]:
    setup = await connect(dsn)
    try:
        await Queries(AsyncpgDriver(setup)).install()
    finally:
        await setup.close()
    worker_conn = await connect(dsn)
    producer_conn = await connect(dsn)
    try:
        qm = QueueManager(Queries(AsyncpgDriver(worker_conn)))
        producer = Queries(AsyncpgDriver(producer_conn))
        starts: dict[int, float] = {}
        delays: list[float] = []
        arrived = asyncio.Event()

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            starts[int(job.id)] = time.perf_counter()
            arrived.set()

        runner = asyncio.create_task(qm.run(dequeue_timeout=timedelta(seconds=30)))
        await asyncio.sleep(0.5)
        for _ in range(samples + 5):
            arrived.clear()
            t0 = time.perf_counter()
            (job_id,) = await producer.enqueue(ENTRYPOINT, None)
            await asyncio.wait_for(arrived.wait(), 10)
            delays.append(starts.pop(int(job_id)) - t0)
            await asyncio.sleep(0.02)  # the worker goes idle again
        qm.shutdown.set()
        await asyncio.wait_for(runner, 30)
    finally:
        await worker_conn.close()
        await producer_conn.close()
    ms = sorted(d * 1000 for d in delays[5:])
    return {
        "samples": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, round(0.99 * len(ms)))],
        "max_ms": ms[-1],
        "latencies_ms": ms,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description="pgqueuer side of the benchmarks")
    parser.add_argument("op", choices=["drain", "enqueue", "latency"])
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--list-size", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    args = parser.parse_args()
    try:
        if args.op == "drain":
            result = await drain(args.dsn, args.jobs, args.batch_size)
        elif args.op == "enqueue":
            result = await enqueue(args.dsn, args.jobs, args.list_size)
        else:
            result = await latency(args.dsn, args.samples)
    finally:
        await drop_schema(args.dsn)
    result["peer"] = "pgqueuer"
    print(json.dumps(result))


if __name__ == "__main__":
    asyncio.run(main())
