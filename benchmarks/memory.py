"""Worker memory: the RSS of one worker process while it drains a large backlog.

    python -m benchmarks.memory [--jobs 1000000] [--batch-size 100] [--json PATH]

Loads ``--jobs`` no-op jobs, then drains them with ``qm.run(mode="drain")`` while a
thread samples this process's resident set size (VmRSS) every 50 ms. The job buffer is
bounded, so the RSS should not grow with the backlog.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import psycopg

from pgqueue_sync import Job, PsycopgDriver, QueueManager

from .common import (
    ENTRYPOINT,
    base_parser,
    emit,
    installed_queue,
    load_jobs,
    median,
    vacuum_analyze,
)


def rss_mb() -> float:
    """This process's resident set size, in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def drain_memory(dsn: str, jobs: int, batch_size: int, workers: int = 4) -> dict[str, Any]:
    with installed_queue(dsn, "mem") as (settings, queries):
        load_jobs(queries, jobs, chunk=50_000)
        vacuum_analyze(dsn, settings)
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.05):
                samples.append(rss_mb())

        with psycopg.connect(dsn, autocommit=True) as conn:
            qm = QueueManager(PsycopgDriver(conn), settings=settings)
            done = 0

            @qm.entrypoint(ENTRYPOINT)
            def noop(job: Job) -> None:
                nonlocal done
                done += 1  # one += under the GIL; exact enough for a progress count

            before = rss_mb()
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            qm.run(dequeue_timeout=1.0, batch_size=batch_size, workers=workers, mode="drain")
            seconds = time.perf_counter() - started
            stop.set()
            sampler.join()
    return {
        "jobs": jobs,
        "batch_size": batch_size,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "rss_before_mb": before,
        "rss_max_mb": max(samples, default=before),
        "rss_median_mb": median(samples) if samples else before,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "memory")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    result = drain_memory(args.dsn, args.jobs, args.batch_size, args.workers)
    emit({"bench": "memory", **result}, args.json)


if __name__ == "__main__":
    main()
