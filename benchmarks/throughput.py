"""Drain throughput: one worker process, no-op handler, a backlog claimed at batch sizes.

    python -m benchmarks.throughput [--jobs 20000] [--batch-sizes 10,100] [--runs 3]
                                    [--workers 4] [--way lab|user] [--peer pgqueuer]
                                    [--json PATH]

Each run installs the queue in a fresh schema, loads ``--jobs`` jobs (COPY), then times
``qm.run(mode="drain")`` from the call to its return (its start-up included). Two ways:

- ``lab`` (the default): VACUUM ANALYZE after loading (the steady state autovacuum keeps a
  busy queue table in) and ``--workers`` handler threads;
- ``user``: the way a user measures it: the backlog is drained right after it is enqueued
  (no VACUUM), with ``run()``'s defaults except ``batch_size`` (``--workers`` is ignored).

With ``--peer pgqueuer`` the peer drains the same backlog the same way in its own process,
alternating with ours run by run.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgqueue_sync import PsycopgDriver, QueueManager

from . import peer
from .common import (
    base_parser,
    emit,
    installed_queue,
    load_jobs,
    median,
    timed_drain,
    vacuum_analyze,
)

DEFAULT_WORKERS = 4
WAYS = ("lab", "user")


def drain_once(
    dsn: str,
    jobs: int,
    batch_size: int,
    workers: int = DEFAULT_WORKERS,
    buffer_size: int | None = None,
    way: str = "lab",
) -> dict[str, Any]:
    """Drain ``jobs`` no-op jobs at ``batch_size``; the jobs/s and the seconds it took."""
    with installed_queue(dsn, "tput") as (settings, queries):
        load_jobs(queries, jobs)
        if way == "lab":
            vacuum_analyze(dsn, settings)
        with psycopg.connect(dsn, autocommit=True) as conn:
            qm = QueueManager(PsycopgDriver(conn), settings=settings)
            if way == "lab":
                options: dict[str, Any] = {
                    "dequeue_timeout": 1.0,
                    "workers": workers,
                    "buffer_size": buffer_size,
                }
            else:
                options = {}
            seconds = timed_drain(qm, jobs, batch_size=batch_size, **options)
    return {"jobs": jobs, "seconds": seconds, "jobs_per_s": jobs / seconds}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "throughput")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--batch-sizes", default="10,100")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--workers", type=int, default=DEFAULT_WORKERS)
    parser.add_argument("--buffer-size", type=int, default=None)
    parser.add_argument("--way", choices=WAYS, default="lab")
    parser.add_argument("--peer", choices=["pgqueuer"], default=None)
    args = parser.parse_args()
    sizes = [int(s) for s in args.batch_sizes.split(",") if s]
    peer_python = peer.require(args.peer)
    rows: list[dict[str, Any]] = []
    for size in sizes:
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.runs):
            ours.append(
                drain_once(args.dsn, args.jobs, size, args.workers, args.buffer_size, args.way)[
                    "jobs_per_s"
                ]
            )
            if peer_python is not None:
                theirs.append(
                    peer.drain(peer_python, args.dsn, args.jobs, size, way=args.way)["jobs_per_s"]
                )
        row: dict[str, Any] = {"batch_size": size, "ours": ours, "ours_median": median(ours)}
        if peer_python is not None:
            row.update(pgqueuer=theirs, pgqueuer_median=median(theirs))
        rows.append(row)
    emit(
        {
            "bench": "throughput",
            "jobs": args.jobs,
            "workers": args.workers if args.way == "lab" else None,
            "way": args.way,
            "peer": None if peer_python is None else args.peer,
            "rows": rows,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
