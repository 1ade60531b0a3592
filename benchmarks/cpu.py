"""Where a drain's CPU goes: the worker process against the rest of the machine.

    python -m benchmarks.cpu [--jobs 100000] [--batch-sizes 10,100] [--workers 4]
                             [--managers 1] [--instructions] [--json PATH]

Loads ``--jobs`` no-op jobs, then times ``qm.run(mode="drain")`` and reads, around it, the
process's CPU time (``getrusage``: every thread of the worker) and the machine's busy time
(``/proc/stat``: the PostgreSQL backends, mostly). Per job, the two say whether the worker
is held back by its interpreter or by the database. ``--managers 2`` runs two managers in
one process on the same queue (two fetchers and flushers, twice the connections), to see
whether overlapping claims would pay.

CPU time is noisy on a busy machine (other processes evict caches and preempt the
worker's threads). ``--instructions`` counts instead the instructions the worker process
executes per job, under ``valgrind --tool=callgrind`` (which must be installed): for each
batch size, two drains of ``--jobs / 10`` and ``--jobs / 5`` jobs (loaded beforehand, by
this process), each in a process of its own under valgrind; the difference of their counts
over the difference of their jobs is the cost of one more job, start-up left out. The
count does not depend on what else the machine runs, so it compares two builds of the
worker even on a busy machine (valgrind runs one thread at a time: the share of
idle-time wake-ups may differ from a real run's).
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from pgqueue_sync import Job, PsycopgDriver, QueueManager, Settings

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


def drain_schema(dsn: str, schema: str, batch_size: int, workers: int) -> None:
    """Drain the queue in ``schema`` (what ``--instructions`` runs under valgrind)."""
    qm = QueueManager(PsycopgDriver(dsn), settings=Settings(schema=schema))

    @qm.entrypoint(ENTRYPOINT)
    def noop(job: Job) -> None:
        pass

    qm.run(mode="drain", batch_size=batch_size, workers=workers, dequeue_timeout=1)


def _instructions(dsn: str, jobs: int, batch_size: int, workers: int) -> int:
    """Instructions executed by a process that drains ``jobs`` jobs, under callgrind."""
    with installed_queue(dsn, "instr") as (settings, queries), tempfile.TemporaryDirectory() as d:
        load_jobs(queries, jobs)
        vacuum_analyze(dsn, settings)
        out = Path(d) / "callgrind.out"
        command = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={out}",
            sys.executable,
            "-m",
            "benchmarks.cpu",
            "--dsn",
            dsn,
            "--drain-schema",
            settings.schema,
            "--batch-sizes",
            str(batch_size),
            "--workers",
            str(workers),
        ]
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(f"valgrind failed: {proc.stderr.strip()[-2000:]}")
        for line in out.read_text().splitlines():
            if line.startswith("totals:") or line.startswith("summary:"):
                return int(line.split()[1])
    raise RuntimeError("callgrind wrote no totals")


def instructions_per_job(dsn: str, jobs: int, batch_size: int, workers: int) -> dict[str, Any]:
    small, large = max(1, jobs // 10), max(2, jobs // 5)
    a = _instructions(dsn, small, batch_size, workers)
    b = _instructions(dsn, large, batch_size, workers)
    return {
        "batch_size": batch_size,
        "jobs": [small, large],
        "instructions": [a, b],
        "instructions_per_job": (b - a) / (large - small),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "cpu")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--batch-sizes", default="10,100")
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--managers", type=int, default=1)
    parser.add_argument("--instructions", action="store_true")
    parser.add_argument("--drain-schema", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.drain_schema is not None:
        drain_schema(args.dsn, args.drain_schema, int(args.batch_sizes), args.workers)
        return
    if args.instructions:
        if shutil.which("valgrind") is None:
            raise SystemExit("--instructions needs valgrind (apt-get install valgrind)")
        found = []
        for size in [int(s) for s in args.batch_sizes.split(",") if s]:
            counted = instructions_per_job(args.dsn, args.jobs, size, args.workers)
            print(f"batch {size}: {counted['instructions_per_job']:,.0f} instructions per job")
            found.append(counted)
        emit({"bench": "cpu", "instructions": True, "rows": found}, args.json)
        return
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
