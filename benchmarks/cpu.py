"""Where a drain's CPU goes: the worker process against the rest of the machine.

    python -m benchmarks.cpu [--jobs 100000] [--batch-sizes 10,100] [--workers 4]
                             [--managers 1] [--json PATH]

Loads ``--jobs`` no-op jobs, then times ``qm.run(mode="drain")`` and reads, around it, the
process's CPU time (``getrusage``: every thread of the worker) and the machine's busy time
(``/proc/stat``: the PostgreSQL backends, mostly). Per job, the two say whether the worker
is held back by its interpreter or by the database. ``--managers 2`` runs two managers in
one process on the same queue (two fetchers and flushers, twice the connections), to see
whether overlapping claims would pay.
"""

from __future__ import annotations

import os
import resource
import threading
import time
from typing import Any

from pgqueue_sync import Job, PsycopgDriver, QueueManager

from .common import ENTRYPOINT, base_parser, emit, installed_queue, load_jobs, vacuum_analyze


def _process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _machine_busy() -> float:
    """CPU seconds the whole machine spent not idle, since boot (Linux)."""
    with open("/proc/stat") as stat:
        ticks = [int(x) for x in stat.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle, iowait
    return (sum(ticks) - idle) / os.sysconf("SC_CLK_TCK")


def drain_cpu(
    dsn: str, jobs: int, batch_size: int, workers: int, managers: int = 1
) -> dict[str, Any]:
    with installed_queue(dsn, "cpu") as (settings, queries):
        load_jobs(queries, jobs)
        vacuum_analyze(dsn, settings)
        runs: list[threading.Thread] = []
        for _ in range(managers):
            qm = QueueManager(PsycopgDriver(dsn), settings=settings)

            @qm.entrypoint(ENTRYPOINT)
            def noop(job: Job) -> None:
                pass

            runs.append(
                threading.Thread(
                    target=qm.run,
                    kwargs={
                        "mode": "drain",
                        "batch_size": batch_size,
                        "workers": workers,
                        "dequeue_timeout": 1,
                    },
                )
            )
        process, machine, started = _process_cpu(), _machine_busy(), time.perf_counter()
        for run in runs:
            run.start()
        for run in runs:
            run.join()
        seconds = time.perf_counter() - started
        process = _process_cpu() - process
        machine = _machine_busy() - machine
    cores = os.cpu_count() or 1
    return {
        "batch_size": batch_size,
        "managers": managers,
        "jobs_per_s": jobs / seconds,
        "seconds": seconds,
        "worker_cpu_s": process,
        "worker_core_share": process / seconds,
        "machine_busy_share": machine / (cores * seconds),
        "worker_us_per_job": 1e6 * process / jobs,
        "rest_us_per_job": 1e6 * max(0.0, machine - process) / jobs,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "cpu")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch-sizes", default="10,100")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--managers", type=int, default=1)
    args = parser.parse_args()
    rows = []
    for size in [int(s) for s in args.batch_sizes.split(",") if s]:
        row = drain_cpu(args.dsn, args.jobs, size, args.workers, args.managers)
        print(
            f"batch {size}: {row['jobs_per_s']:,.0f} jobs/s; worker process "
            f"{row['worker_us_per_job']:.1f} us/job ({row['worker_core_share']:.0%} of one "
            f"core), rest of the machine {row['rest_us_per_job']:.1f} us/job; machine "
            f"{row['machine_busy_share']:.0%} busy"
        )
        rows.append(row)
    emit({"bench": "cpu", "jobs": args.jobs, "workers": args.workers, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
