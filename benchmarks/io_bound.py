"""I/O-bound handlers: 64 threads, each job sleeping 50 ms (an HTTP call, say).

    python -m benchmarks.io_bound [--threads 64] [--sleep 0.05] [--jobs 6400]
                                  [--batch-size 10] [--json PATH]

Loads ``--jobs`` jobs whose handler sleeps ``--sleep`` seconds, then drains them with
``qm.run(workers=THREADS, batch_size=..., mode="drain")``, timed from the call to its
return. The ideal is ``threads / sleep`` jobs/s (1,280 for 64 threads of 50 ms); the
result says which share of it the worker reached. Memory: this process's resident set
(VmRSS) is sampled every 20 ms; ``per_thread_kib`` is its growth from before ``run()`` to
the drain's peak, divided by the threads (an upper bound: the buffer, the connections and
the claimed jobs are in it too). pgqueuer runs async handlers on an event loop, so the
measure has no peer.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from pgqueue_sync import Job, PsycopgDriver, QueueManager

from .common import ENTRYPOINT, base_parser, emit, installed_queue, load_jobs, vacuum_analyze
from .memory import rss_mb


def measure(dsn: str, threads: int, sleep: float, jobs: int, batch_size: int) -> dict[str, Any]:
    with installed_queue(dsn, "iobound") as (settings, queries):
        load_jobs(queries, jobs)
        vacuum_analyze(dsn, settings)
        qm = QueueManager(PsycopgDriver(dsn), settings=settings)
        done = 0
        lock = threading.Lock()

        @qm.entrypoint(ENTRYPOINT)
        def call(job: Job) -> None:
            nonlocal done
            time.sleep(sleep)
            with lock:
                done += 1

        before = rss_mb()
        peak = before
        sampling = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not sampling.wait(0.02):
                peak = max(peak, rss_mb())

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        started = time.perf_counter()
        qm.run(workers=threads, batch_size=batch_size, mode="drain")
        seconds = time.perf_counter() - started
        sampling.set()
        sampler.join()
    if done != jobs:
        raise RuntimeError(f"drained {done} of {jobs} jobs")
    ideal = threads / sleep
    return {
        "threads": threads,
        "sleep_s": sleep,
        "jobs": jobs,
        "seconds": seconds,
        "jobs_per_s": jobs / seconds,
        "ideal_jobs_per_s": ideal,
        "share_of_ideal": jobs / seconds / ideal,
        "rss_before_mib": before,
        "rss_peak_mib": peak,
        "per_thread_kib": (peak - before) * 1024 / threads,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "io_bound")
    parser.add_argument("--threads", type=int, default=64)
    parser.add_argument("--sleep", type=float, default=0.05)
    parser.add_argument("--jobs", type=int, default=6400)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    row = measure(args.dsn, args.threads, args.sleep, args.jobs, args.batch_size)
    print(
        f"{row['threads']} threads, {row['sleep_s'] * 1000:.0f} ms per job: "
        f"{row['jobs_per_s']:,.0f} jobs/s, {row['share_of_ideal']:.0%} of the ideal "
        f"{row['ideal_jobs_per_s']:,.0f}; RSS {row['rss_before_mib']:.1f} -> "
        f"{row['rss_peak_mib']:.1f} MiB, {row['per_thread_kib']:.0f} KiB per thread at most"
    )
    emit({"bench": "io_bound", **row}, args.json)


if __name__ == "__main__":
    main()
