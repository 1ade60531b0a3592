"""Pick-up latency of an idle worker: from the enqueue call to the handler's start.

    python -m benchmarks.latency [--samples 300] [--gap 0.02] [--peer pgqueuer] [--json PATH]

A worker runs (continuous mode, idle, woken by NOTIFY); a producer on its own connection
enqueues one job at a time, waiting for each to start and then ``--gap`` seconds so the
worker is idle again. The clock starts before the enqueue call, so each sample includes
the producer's commit round trip: an upper bound of commit-to-start. The enqueue call's
own duration (the producer's INSERT and commit, the WAL flush included) is reported beside
(``enqueue_p50_ms``): the part of each sample that no queue's worker can shorten. Each
sample less its own call (``after_call_p50_ms``: from the call's return to the handler's
start, negative when the handler starts first) is the worker's part, a lower bound: the
NOTIFY leaves at the commit, before the call returns.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import psycopg

from pgqueue_sync import Job, PsycopgDriver, Queries, QueueManager

from . import peer
from .common import ENTRYPOINT, base_parser, emit, installed_queue, percentile

WARMUP = 5


def summarize(
    latencies_ms: list[float],
    enqueue_ms: list[float] | None = None,
    after_call_ms: list[float] | None = None,
) -> dict[str, Any]:
    summary = {
        "samples": len(latencies_ms),
        "p50_ms": percentile(latencies_ms, 50),
        "p90_ms": percentile(latencies_ms, 90),
        "p99_ms": percentile(latencies_ms, 99),
        "max_ms": max(latencies_ms) if latencies_ms else float("nan"),
        "latencies_ms": sorted(latencies_ms),
    }
    if enqueue_ms:
        summary["enqueue_p50_ms"] = percentile(enqueue_ms, 50)
        summary["enqueue_ms"] = sorted(enqueue_ms)
    if after_call_ms:
        summary["after_call_p50_ms"] = percentile(after_call_ms, 50)
        summary["after_call_ms"] = sorted(after_call_ms)
    return summary


def measure(dsn: str, samples: int, gap: float = 0.02) -> dict[str, Any]:
    with (
        installed_queue(dsn, "lat") as (settings, _),
        psycopg.connect(dsn, autocommit=True) as worker_conn,
        psycopg.connect(dsn, autocommit=True) as producer_conn,
    ):
        qm = QueueManager(PsycopgDriver(worker_conn), settings=settings)
        producer = Queries(PsycopgDriver(producer_conn), settings)
        started = threading.Event()
        starts: dict[int, float] = {}
        delays: list[float] = []
        calls: list[float] = []

        @qm.entrypoint(ENTRYPOINT)
        def noop(job: Job) -> None:
            starts[job.id] = time.perf_counter()
            started.set()

        runner = threading.Thread(
            target=qm.run, kwargs={"dequeue_timeout": 30.0, "batch_size": 10}, daemon=True
        )
        runner.start()
        time.sleep(0.3)
        try:
            for _ in range(samples + WARMUP):
                started.clear()
                t0 = time.perf_counter()
                (job_id,) = producer.enqueue(ENTRYPOINT, None)
                calls.append(time.perf_counter() - t0)
                if not started.wait(10.0):
                    raise RuntimeError("a job was not picked up within 10 s")
                # The handler may start before enqueue() returns: its time is kept by id.
                delays.append(starts.pop(job_id) - t0)
                time.sleep(gap)
        finally:
            qm.alive = False
            runner.join(30.0)
    kept = list(zip(delays[WARMUP:], calls[WARMUP:], strict=True))
    return summarize(
        [d * 1000 for d, _ in kept],
        [c * 1000 for _, c in kept],
        [(d - c) * 1000 for d, c in kept],
    )


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "latency")
    parser.add_argument("--samples", type=int, default=300)
    parser.add_argument("--gap", type=float, default=0.02)
    parser.add_argument("--peer", choices=["pgqueuer"], default=None)
    args = parser.parse_args()
    result: dict[str, Any] = {"bench": "latency", "ours": measure(args.dsn, args.samples, args.gap)}
    peer_python = peer.require(args.peer)
    if peer_python is not None:
        result["pgqueuer"] = peer.latency(peer_python, args.dsn, args.samples)
    emit(result, args.json)


if __name__ == "__main__":
    main()
