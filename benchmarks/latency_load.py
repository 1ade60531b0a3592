"""Pick-up latency under load: a producer enqueues at half the drain rate while a worker runs.

    python -m benchmarks.latency_load [--seconds 5] [--rate JOBS_PER_S] [--batch-size 10]
                                      [--peer pgqueuer] [--json PATH]

A worker runs (continuous mode, ``run()``'s defaults but ``batch_size``); a producer on its
own connection enqueues at ``--rate`` jobs/s for ``--seconds``: every millisecond, the jobs
due by then, in one call. Each job's latency runs from the start of the call that enqueued
it to its handler's start (end to end: the producer's commit included). Without
``--rate``, each queue is loaded at half its own drain rate, measured first (5,000 jobs,
the user's way). The peer runs the same in its own process.

Each queue's measure starts with a CHECKPOINT: run after benchmarks that wrote gigabytes of
WAL, a checkpoint starting inside the 5 s window (every page's first change after it is
written whole to the WAL) cut both queues' throughput below the offered rate and once
gave p99 of seconds. After a CHECKPOINT the next one is at least max_wal_size / 2 of WAL
away (minutes at these rates). Production runs through checkpoints: this measure is of
the queue, not of one.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from pgqueue_sync import Job, PsycopgDriver, Queries, QueueManager

from . import peer, throughput
from .common import ENTRYPOINT, base_parser, emit, installed_queue, percentile

CALIBRATION_JOBS = 5000


def measure(
    dsn: str, seconds: float, rate: float | None = None, batch_size: int = 10
) -> dict[str, Any]:
    if rate is None:
        drain = throughput.drain_once(dsn, CALIBRATION_JOBS, batch_size, way="user")
        rate = drain["jobs_per_s"] / 2
    with psycopg.connect(dsn, autocommit=True) as admin:
        admin.execute("CHECKPOINT")
    with (
        installed_queue(dsn, "latload") as (settings, _),
        psycopg.connect(dsn, autocommit=True) as producer_conn,
    ):
        qm = QueueManager(PsycopgDriver(dsn), settings=settings)
        producer = Queries(PsycopgDriver(producer_conn), settings)
        starts: dict[int, float] = {}

        @qm.entrypoint(ENTRYPOINT)
        def noop(job: Job) -> None:
            starts[job.id] = time.perf_counter()

        runner = threading.Thread(target=qm.run, kwargs={"batch_size": batch_size}, daemon=True)
        runner.start()
        time.sleep(0.5)
        sent: dict[int, float] = {}
        try:
            began = time.perf_counter()
            enqueued = 0
            while (now := time.perf_counter()) - began < seconds:
                due = int((now - began) * rate) - enqueued
                if due > 0:
                    t0 = time.perf_counter()
                    for job_id in producer.enqueue([ENTRYPOINT] * due, [None] * due):
                        sent[job_id] = t0
                    enqueued += due
                time.sleep(0.001)
            deadline = time.perf_counter() + 30
            while len(starts) < len(sent) and time.perf_counter() < deadline:
                time.sleep(0.01)
        finally:
            qm.alive = False
            runner.join(30.0)
    latencies = [(starts[i] - t0) * 1000 for i, t0 in sent.items() if i in starts]
    return {
        "rate": rate,
        "enqueued": len(sent),
        "started": len(latencies),
        "p50_ms": percentile(latencies, 50),
        "p99_ms": percentile(latencies, 99),
        "max_ms": max(latencies, default=float("nan")),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "latency_load")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=None)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--peer", choices=["pgqueuer"], default=None)
    args = parser.parse_args()
    peer_python = peer.require(args.peer)
    result: dict[str, Any] = {"bench": "latency_load", "batch_size": args.batch_size}
    sides: list[tuple[str, dict[str, Any]]] = [
        ("pgqueue-sync", measure(args.dsn, args.seconds, args.rate, args.batch_size))
    ]
    result["ours"] = sides[0][1]
    if peer_python is not None:
        result["pgqueuer"] = peer.latency_load(
            peer_python, args.dsn, args.seconds, args.rate, args.batch_size
        )
        sides.append(("pgqueuer", result["pgqueuer"]))
    for name, row in sides:
        print(
            f"{name}: {row['rate']:,.0f} jobs/s offered, {row['started']:,} started of "
            f"{row['enqueued']:,}; p50 {row['p50_ms']:.2f} ms, p99 {row['p99_ms']:.2f} ms, "
            f"max {row['max_ms']:.1f} ms"
        )
    emit(result, args.json)


if __name__ == "__main__":
    main()
