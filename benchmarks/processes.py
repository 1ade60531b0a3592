"""More than one core: a drain by N worker processes (``pgq-sync run --processes N``).

    python -m benchmarks.processes [--jobs 40000] [--processes 1,2,4] [--batch-size 100]
                                   [--peer pgqueuer] [--json PATH]

For each N: a fresh queue with ``--jobs`` no-op jobs (VACUUM ANALYZE after loading), then
``pgq-sync run benchmarks.processes:app --processes N --mode drain --batch-size B``: a
supervisor and N worker processes, each with ``run()``'s default threads. Two numbers:
``wall_jobs_per_s``, from the launch to the supervisor's exit (interpreter start-ups
included), and ``jobs_per_s``, over the span of the completions in the log table (first to
last), which is the drain's rate once the processes run. With ``--peer pgqueuer``, N peer
processes drain the same way (no supervisor: it has none), timed over their handlers'
span. On a machine with fewer cores than N plus what PostgreSQL needs, the curve flattens:
the processes and the database share the cores.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

import psycopg

from pgqueue_sync import Job, PsycopgDriver, QueueManager, Settings

from . import peer
from .common import ENTRYPOINT, ROOT, base_parser, emit, installed_queue, load_jobs, vacuum_analyze

SCHEMA_VARIABLE = "PGQUEUE_BENCH_SCHEMA"


def app() -> QueueManager:
    """The application each worker process loads: a no-op handler on the benchmark's queue
    (its schema in PGQUEUE_BENCH_SCHEMA, its database in PGQUEUE_DSN)."""
    dsn = os.environ["PGQUEUE_DSN"]
    qm = QueueManager(PsycopgDriver(dsn), settings=Settings(schema=os.environ[SCHEMA_VARIABLE]))

    @qm.entrypoint(ENTRYPOINT)
    def noop(job: Job) -> None:
        pass

    return qm


def drain(dsn: str, jobs: int, processes: int, batch_size: int) -> dict[str, Any]:
    with installed_queue(dsn, "procs") as (settings, queries):
        load_jobs(queries, jobs)
        vacuum_analyze(dsn, settings)
        env = {**os.environ, "PGQUEUE_DSN": dsn, SCHEMA_VARIABLE: settings.schema}
        command = [
            sys.executable,
            "-m",
            "pgqueue_sync.cli",
            "run",
            "benchmarks.processes:app",
            "--processes",
            str(processes),
            "--mode",
            "drain",
            "--batch-size",
            str(batch_size),
        ]
        started = time.perf_counter()
        proc = subprocess.run(
            command, check=False, cwd=ROOT, env=env, capture_output=True, text=True
        )
        wall = time.perf_counter() - started
        if proc.returncode != 0:
            raise RuntimeError(f"pgq-sync run failed: {proc.stderr.strip()[-2000:]}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            log = settings.ident("log").as_string(conn)
            row = conn.execute(
                f"SELECT count(*), extract(epoch FROM max(created) - min(created))::float8 "
                f"FROM {log}"
            ).fetchone()
    done, span = (int(row[0]), float(row[1] or 0.0)) if row else (0, 0.0)
    if done != jobs:
        raise RuntimeError(f"drained {done} of {jobs} jobs")
    return {
        "processes": processes,
        "jobs": jobs,
        "wall_s": wall,
        "wall_jobs_per_s": jobs / wall,
        "span_s": span,
        "jobs_per_s": jobs / span if span > 0 else None,
    }


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "processes")
    parser.add_argument("--jobs", type=int, default=40_000)
    parser.add_argument("--processes", default="1,2,4")
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--peer", choices=["pgqueuer"], default=None)
    args = parser.parse_args()
    peer_python = peer.require(args.peer)
    rows: list[dict[str, Any]] = []
    for n in [int(s) for s in args.processes.split(",") if s]:
        row: dict[str, Any] = {
            "processes": n,
            "ours": drain(args.dsn, args.jobs, n, args.batch_size),
        }
        if peer_python is not None:
            row["pgqueuer"] = peer.processes(peer_python, args.dsn, args.jobs, n, args.batch_size)
        ours, theirs = row["ours"], row.get("pgqueuer", {})
        print(
            f"{n} process(es): pgqueue-sync {_fmt(ours['jobs_per_s'])} jobs/s "
            f"({_fmt(ours['wall_jobs_per_s'])} launch to exit); pgqueuer "
            f"{_fmt(theirs.get('jobs_per_s'))} ({_fmt(theirs.get('wall_jobs_per_s'))})"
        )
        rows.append(row)
    emit(
        {
            "bench": "processes",
            "jobs": args.jobs,
            "batch_size": args.batch_size,
            "cpus": os.cpu_count(),
            "rows": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
