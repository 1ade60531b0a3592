"""Through PgBouncer in transaction mode vs straight to PostgreSQL: latency and throughput.

    python -m benchmarks.pgbouncer [--samples 200] [--poll-samples 40] [--poll-timeout 0.5]
                                   [--jobs 20000] [--batch-sizes 10,100] [--runs 3]
                                   [--claims 2000] [--pool-size 10] [--json PATH]

It starts its own PgBouncer (the ``pgbouncer`` binary; ``pool_mode = transaction``,
``default_pool_size = --pool-size``) in front of ``--dsn`` and measures:

- pick-up latency of an idle worker (as ``benchmarks.latency``: enqueue call to handler
  start): direct; through PgBouncer with ``listen_dsn`` (woken by NOTIFY on a direct
  connection); through PgBouncer polling every ``--poll-timeout`` s (no ``listen_dsn``);
- drain throughput (as ``benchmarks.throughput``, at each of ``--batch-sizes``): direct;
  direct with ``transaction_pooling=True`` (no prepared statements, no session settings:
  their cost alone, without PgBouncer's hop); through PgBouncer;
- one empty claim's round trip through PgBouncer: as sent, and wrapped in
  ``BEGIN; SET LOCAL synchronous_commit = off; ...; COMMIT`` (what applying the fetch
  session's setting per transaction would cost).
"""

from __future__ import annotations

import contextlib
import random
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg

from pgqueue_sync import Job, PsycopgDriver, Queries, QueueManager
from pgqueue_sync.engine.store import Store
from tests.pgbouncer.server import PgBouncer, pgbouncer_binary

from .common import (
    ENTRYPOINT,
    base_parser,
    emit,
    installed_queue,
    load_jobs,
    median,
    timed_drain,
    vacuum_analyze,
)
from .latency import WARMUP, summarize


@contextlib.contextmanager
def pgbouncer(dsn: str, pool_size: int) -> Iterator[PgBouncer]:
    if pgbouncer_binary() is None:
        raise SystemExit("pgbouncer is not installed (apt-get install pgbouncer)")
    with tempfile.TemporaryDirectory() as directory:
        # Round robin would only spread load evenly; PgBouncer's default (LIFO) is kept.
        bouncer = PgBouncer(dsn, Path(directory), pool_size=pool_size, round_robin=False)
        with bouncer:
            yield bouncer


def latency(
    dsn: str, producer_dsn: str, driver: PsycopgDriver, samples: int, dequeue_timeout: float
) -> dict[str, Any]:
    """Pick-up latency of an idle worker over ``driver``, of jobs a producer connected to
    ``producer_dsn`` enqueues one at a time."""
    polling = not driver.can_listen
    with (
        installed_queue(dsn, "pgbl") as (settings, _),
        psycopg.connect(producer_dsn, autocommit=True, prepare_threshold=None) as producer_conn,
    ):
        qm = QueueManager(driver, settings=settings)
        producer = Queries(PsycopgDriver(producer_conn), settings)
        started = threading.Event()
        starts: dict[int, float] = {}
        delays: list[float] = []

        @qm.entrypoint(ENTRYPOINT)
        def noop(job: Job) -> None:
            starts[job.id] = time.perf_counter()
            started.set()

        runner = threading.Thread(
            target=qm.run, kwargs={"dequeue_timeout": dequeue_timeout}, daemon=True
        )
        runner.start()
        time.sleep(0.3)
        try:
            for _ in range(samples + WARMUP):
                started.clear()
                t0 = time.perf_counter()
                (job_id,) = producer.enqueue(ENTRYPOINT, None)
                if not started.wait(10.0 + dequeue_timeout):
                    raise RuntimeError("a job was not picked up in time")
                delays.append(starts.pop(job_id) - t0)
                # A polling worker wakes on its own schedule: jobs arrive at random points
                # of it (a fixed gap would measure one point only).
                time.sleep(0.02 + (random.uniform(0, dequeue_timeout) if polling else 0.0))
        finally:
            qm.alive = False
            runner.join(30.0)
            driver.close()
    result = summarize([d * 1000 for d in delays[WARMUP:]])
    result.pop("latencies_ms")
    return result


def drain(dsn: str, driver: PsycopgDriver, jobs: int, batch_size: int) -> float:
    """Jobs per second draining ``jobs`` no-op jobs over ``driver`` (4 handler threads)."""
    with installed_queue(dsn, "pgbt") as (settings, queries):
        load_jobs(queries, jobs)
        vacuum_analyze(dsn, settings)
        qm = QueueManager(driver, settings=settings)
        seconds = timed_drain(qm, jobs, dequeue_timeout=1.0, batch_size=batch_size, workers=4)
        driver.close()
    return jobs / seconds


def claim_round_trip(dsn: str, bouncer_dsn: str, claims: int) -> dict[str, float]:
    """Microseconds per empty claim through PgBouncer: alone, and with SET LOCAL around it."""
    with (
        installed_queue(dsn, "pgbc") as (settings, _),
        psycopg.connect(bouncer_dsn, autocommit=True, prepare_threshold=None) as conn,
    ):
        queries = Store(PsycopgDriver(conn, transaction_pooling=True), settings)
        worker = uuid.uuid4()

        def plain() -> None:
            queries.dequeue(10, [ENTRYPOINT], worker)

        def set_local() -> None:
            with conn.transaction():
                conn.execute("SET LOCAL synchronous_commit = off")
                queries.dequeue(10, [ENTRYPOINT], worker)

        result: dict[str, float] = {}
        for name, claim in (("plain_us", plain), ("set_local_us", set_local)):
            for _ in range(50):
                claim()
            began = time.perf_counter()
            for _ in range(claims):
                claim()
            result[name] = (time.perf_counter() - began) / claims * 1e6
    return result


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "pgbouncer")
    parser.add_argument("--samples", type=int, default=200)
    parser.add_argument("--poll-samples", type=int, default=40)
    parser.add_argument("--poll-timeout", type=float, default=0.5)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch-sizes", default="10,100")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--claims", type=int, default=2000)
    parser.add_argument("--pool-size", type=int, default=10)
    args = parser.parse_args()
    dsn: str = args.dsn
    with pgbouncer(dsn, args.pool_size) as bouncer:
        pooled = bouncer.dsn

        def direct() -> PsycopgDriver:
            return PsycopgDriver(dsn)

        def direct_pooling_mode() -> PsycopgDriver:
            return PsycopgDriver(dsn, transaction_pooling=True, listen_dsn=dsn)

        def through(listen: bool = True) -> PsycopgDriver:
            return PsycopgDriver(
                pooled, transaction_pooling=True, listen_dsn=dsn if listen else None
            )

        lat = {
            "direct": latency(dsn, dsn, direct(), args.samples, 30.0),
            "pgbouncer_listen_dsn": latency(dsn, pooled, through(), args.samples, 30.0),
            "pgbouncer_polling": latency(
                dsn, pooled, through(listen=False), args.poll_samples, args.poll_timeout
            ),
        }
        throughput: list[dict[str, Any]] = []
        for size in [int(n) for n in args.batch_sizes.split(",") if n]:
            runs: dict[str, list[float]] = {
                "direct": [],
                "direct_pooling_mode": [],
                "pgbouncer": [],
            }
            for _ in range(args.runs):  # alternating, run by run
                runs["direct"].append(drain(dsn, direct(), args.jobs, size))
                runs["direct_pooling_mode"].append(
                    drain(dsn, direct_pooling_mode(), args.jobs, size)
                )
                runs["pgbouncer"].append(drain(dsn, through(), args.jobs, size))
            throughput.append(
                {
                    "batch_size": size,
                    **runs,
                    **{f"{name}_median": median(values) for name, values in runs.items()},
                }
            )
        claim = claim_round_trip(dsn, pooled, args.claims)
    emit(
        {
            "bench": "pgbouncer",
            "pool_size": args.pool_size,
            "poll_timeout": args.poll_timeout,
            "latency": lat,
            "jobs": args.jobs,
            "throughput": throughput,
            "claim_round_trip": claim,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
