"""The peer's side of the benchmarks, run with the peer's interpreter (pgqueuer, asyncpg).

    python benchmarks/peer_pgqueuer.py drain --dsn DSN --jobs N --batch-size B [--way user]
    python benchmarks/peer_pgqueuer.py enqueue --dsn DSN --jobs N --list-size L
    python benchmarks/peer_pgqueuer.py latency --dsn DSN --samples N
    python benchmarks/peer_pgqueuer.py startup --dsn DSN --samples N --jobs N
    python benchmarks/peer_pgqueuer.py latency-load --dsn DSN --seconds S [--rate R]
    python benchmarks/peer_pgqueuer.py processes --dsn DSN --jobs N --processes P

Only pgqueuer's public API is used (QueueManager, entrypoint, Queries.install/enqueue,
run(batch_size=..., mode=drain)). Each call installs pgqueuer in a fresh schema (set
through PGQUEUER_SCHEMA before pgqueuer is imported), prints one JSON line, and drops the
schema. This file imports nothing from pgqueue_sync: the peer's virtualenv does not have it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shlex
import statistics
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

# A child of ``processes`` inherits its parent's schema and prefix (drain-child).
SCHEMA = os.environ.get("PGQUEUE_BENCH_PEER_SCHEMA") or f"bench_peer_{uuid.uuid4().hex[:8]}"
PREFIX = os.environ.get("PGQUEUE_BENCH_PEER_PREFIX") or f"b{uuid.uuid4().hex[:6]}_"
os.environ["PGQUEUER_SCHEMA"] = SCHEMA
os.environ["PGQUEUER_PREFIX"] = PREFIX

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


async def drain(dsn: str, jobs: int, batch_size: int, way: str = "lab") -> dict[str, Any]:
    conn = await connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        await load(queries, jobs, 1000)
        if way == "lab":
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
        if way == "lab":
            await qm.run(
                dequeue_timeout=timedelta(seconds=1),
                batch_size=batch_size,
                mode=QueueExecutionMode.drain,
            )
        else:  # run()'s defaults but the batch size
            await qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
        seconds = time.perf_counter() - started
    finally:
        await conn.close()
    if done != jobs:
        raise RuntimeError(f"drained {done} of {jobs} jobs")
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds, "way": way}


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


@contextlib.asynccontextmanager
async def worker_and_producer(dsn: str) -> AsyncIterator[tuple[QueueManager, Queries]]:
    """The queue installed; a QueueManager and a producer's Queries, each on a connection
    of its own (closed afterwards)."""
    setup = await connect(dsn)
    try:
        await Queries(AsyncpgDriver(setup)).install()
    finally:
        await setup.close()
    worker_conn = await connect(dsn)
    producer_conn = await connect(dsn)
    try:
        yield (
            QueueManager(Queries(AsyncpgDriver(worker_conn))),
            Queries(AsyncpgDriver(producer_conn)),
        )
    finally:
        await worker_conn.close()
        await producer_conn.close()


async def latency(dsn: str, samples: int) -> dict[str, Any]:
    async with worker_and_producer(dsn) as (qm, producer):
        starts: dict[int, float] = {}
        delays: list[float] = []
        calls: list[float] = []
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
            calls.append(time.perf_counter() - t0)
            await asyncio.wait_for(arrived.wait(), 10)
            delays.append(starts.pop(int(job_id)) - t0)
            await asyncio.sleep(0.02)  # the worker goes idle again
        qm.shutdown.set()
        await asyncio.wait_for(runner, 30)
    ms = sorted(d * 1000 for d in delays[5:])
    enqueue_ms = sorted(c * 1000 for c in calls[5:])
    after_call_ms = sorted((d - c) * 1000 for d, c in zip(delays[5:], calls[5:], strict=True))
    return {
        "samples": len(ms),
        "p50_ms": statistics.median(ms),
        "p99_ms": ms[min(len(ms) - 1, round(0.99 * len(ms)))],
        "max_ms": ms[-1],
        "latencies_ms": ms,
        "enqueue_p50_ms": statistics.median(enqueue_ms),
        "enqueue_ms": enqueue_ms,
        "after_call_p50_ms": statistics.median(after_call_ms),
        "after_call_ms": after_call_ms,
    }


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[rank]


async def _startup_sample(conn: asyncpg.Connection, jobs: int) -> tuple[float, float]:
    await load(Queries(AsyncpgDriver(conn)), jobs, 1000)
    qm = QueueManager(Queries(AsyncpgDriver(conn)))
    first: list[float] = []
    ends: list[float] = []

    @qm.entrypoint(ENTRYPOINT)
    async def noop(job: Job) -> None:
        if not first:
            first.append(time.perf_counter())
        ends.append(time.perf_counter())

    started = time.perf_counter()
    await qm.run(batch_size=10, mode=QueueExecutionMode.drain)
    returned = time.perf_counter()
    return (first[0] - started) * 1000, (returned - ends[-1]) * 1000


async def startup(dsn: str, samples: int, jobs: int) -> dict[str, Any]:
    """Per sample: ``jobs`` queued, run(mode=drain) called; from the call to the first
    handler's start (start-up and first claim), and from the last handler's end to run()'s
    return (the drain's tail)."""
    conn = await connect(dsn)
    try:
        await Queries(AsyncpgDriver(conn)).install()
        rows = [await _startup_sample(conn, jobs) for _ in range(samples + 1)]
    finally:
        await conn.close()
    first_ms = [r[0] for r in rows[1:]]  # the first sample warms up
    tail_ms = [r[1] for r in rows[1:]]
    return {
        "samples": len(first_ms),
        "first_job_ms": statistics.median(first_ms),
        "first_job_p90_ms": _pct(first_ms, 90),
        "tail_ms": statistics.median(tail_ms),
        "tail_p90_ms": _pct(tail_ms, 90),
    }


async def latency_load(
    dsn: str, seconds: float, rate: float | None, batch_size: int
) -> dict[str, Any]:
    """Pick-up latency (enqueue call to handler start) with a producer enqueueing at
    ``rate`` jobs/s (default: half the drain rate measured first, the user's way)."""
    if rate is None:
        rate = (await drain(dsn, 5000, batch_size, way="user"))["jobs_per_s"] / 2
        await drop_schema(dsn)
    admin = await connect(dsn)
    try:
        await admin.execute("CHECKPOINT")  # as benchmarks/latency_load.py does for ours
    finally:
        await admin.close()
    async with worker_and_producer(dsn) as (qm, producer):
        starts: dict[int, float] = {}

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            starts[int(job.id)] = time.perf_counter()

        runner = asyncio.create_task(qm.run(batch_size=batch_size))
        await asyncio.sleep(0.5)
        sent: dict[int, float] = {}
        began = time.perf_counter()
        enqueued = 0
        while (now := time.perf_counter()) - began < seconds:
            due = int((now - began) * rate) - enqueued
            if due > 0:
                t0 = time.perf_counter()
                ids = await producer.enqueue([ENTRYPOINT] * due, [None] * due, [0] * due)
                for job_id in ids:
                    sent[int(job_id)] = t0
                enqueued += due
            await asyncio.sleep(0.001)
        deadline = time.perf_counter() + 30
        while len(starts) < len(sent) and time.perf_counter() < deadline:
            await asyncio.sleep(0.01)
        qm.shutdown.set()
        await asyncio.wait_for(runner, 30)
    ms = [(starts[i] - t0) * 1000 for i, t0 in sent.items() if i in starts]
    return {
        "rate": rate,
        "enqueued": len(sent),
        "started": len(ms),
        "p50_ms": _pct(ms, 50),
        "p99_ms": _pct(ms, 99),
        "max_ms": max(ms),
    }


async def drain_child(batch_size: int) -> dict[str, Any]:
    """One of ``processes``' children: drain the parent's schema; its handlers' span."""
    conn = await connect(os.environ["PGQUEUE_BENCH_PEER_DSN"])
    try:
        qm = QueueManager(Queries(AsyncpgDriver(conn)))
        times: list[float] = []

        @qm.entrypoint(ENTRYPOINT)
        async def noop(job: Job) -> None:
            times.append(time.time())

        await qm.run(batch_size=batch_size, mode=QueueExecutionMode.drain)
    finally:
        await conn.close()
    return {"done": len(times), "first": min(times, default=None), "last": max(times, default=None)}


async def processes(dsn: str, jobs: int, count: int, batch_size: int) -> dict[str, Any]:
    """Drain ``jobs`` with ``count`` worker processes on one queue; wall time from their
    launch to the last one's exit, and the rate over the span of their handlers."""
    conn = await connect(dsn)
    try:
        queries = Queries(AsyncpgDriver(conn))
        await queries.install()
        await load(queries, jobs, 1000)
    finally:
        await conn.close()
    env = {
        **os.environ,
        "PGQUEUE_BENCH_PEER_SCHEMA": SCHEMA,
        "PGQUEUE_BENCH_PEER_PREFIX": PREFIX,
        "PGQUEUE_BENCH_PEER_DSN": dsn,
    }
    args = [sys.executable, __file__, "drain-child", "--dsn", dsn, "--batch-size", str(batch_size)]
    started = time.perf_counter()
    children = [
        subprocess.Popen(args, env=env, stdout=subprocess.PIPE, text=True) for _ in range(count)
    ]
    outs = [child.communicate()[0] for child in children]
    wall = time.perf_counter() - started
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outs]
    done = sum(r["done"] for r in reports)
    if done != jobs:
        raise RuntimeError(f"drained {done} of {jobs} jobs")
    span = max(r["last"] for r in reports if r["last"]) - min(
        r["first"] for r in reports if r["first"]
    )
    return {
        "processes": count,
        "jobs": jobs,
        "wall_s": wall,
        "wall_jobs_per_s": jobs / wall,
        "span_s": span,
        "jobs_per_s": jobs / span if span > 0 else None,
    }


async def main() -> None:
    parser = argparse.ArgumentParser(description="pgqueuer side of the benchmarks")
    parser.add_argument(
        "op",
        choices=[
            "drain",
            "enqueue",
            "latency",
            "startup",
            "latency-load",
            "processes",
            "drain-child",
        ],
    )
    parser.add_argument("--dsn", required=True)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--list-size", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--way", choices=["lab", "user"], default="lab")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--processes", type=int, default=1)
    args = parser.parse_args()
    if args.op == "drain-child":  # the parent drops the schema
        print(json.dumps(await drain_child(args.batch_size)))
        return
    try:
        if args.op == "drain":
            result = await drain(args.dsn, args.jobs, args.batch_size, args.way)
        elif args.op == "startup":
            result = await startup(args.dsn, args.samples, args.jobs)
        elif args.op == "latency-load":
            result = await latency_load(args.dsn, args.seconds, args.rate, args.batch_size)
        elif args.op == "processes":
            result = await processes(args.dsn, args.jobs, args.processes, args.batch_size)
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
