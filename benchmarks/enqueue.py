"""Enqueue throughput: lists of jobs written with ``Queries.enqueue`` (COPY from 256 up).

    python -m benchmarks.enqueue [--jobs 100000] [--list-sizes 1000,10000] [--runs 3]
                                 [--peer pgqueuer] [--json PATH]

One producer connection; each run installs the queue in a fresh schema, warms up with one
list, then times ``--jobs`` jobs enqueued in lists of the given size.
"""

from __future__ import annotations

import time
from typing import Any

from . import peer
from .common import ENTRYPOINT, base_parser, emit, installed_queue, median


def enqueue_once(dsn: str, jobs: int, list_size: int) -> dict[str, Any]:
    with installed_queue(dsn, "enq") as (_, queries):
        names = [ENTRYPOINT] * list_size
        payloads: list[bytes | None] = [None] * list_size
        queries.enqueue(names, payloads)  # warm-up: sequence lookup, statement preparation
        started = time.perf_counter()
        left = jobs
        while left > 0:
            n = min(list_size, left)
            queries.enqueue(names[:n], payloads[:n])
            left -= n
        seconds = time.perf_counter() - started
    return {"jobs": jobs, "list_size": list_size, "seconds": seconds, "jobs_per_s": jobs / seconds}


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "enqueue")
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--list-sizes", default="1000,10000")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--peer", choices=["pgqueuer"], default=None)
    args = parser.parse_args()
    peer_python = peer.require(args.peer)
    rows: list[dict[str, Any]] = []
    for size in [int(s) for s in args.list_sizes.split(",") if s]:
        ours: list[float] = []
        theirs: list[float] = []
        for _ in range(args.runs):
            ours.append(enqueue_once(args.dsn, args.jobs, size)["jobs_per_s"])
            if peer_python is not None:
                theirs.append(peer.enqueue(peer_python, args.dsn, args.jobs, size)["jobs_per_s"])
        row: dict[str, Any] = {"list_size": size, "ours": ours, "ours_median": median(ours)}
        if peer_python is not None:
            row.update(pgqueuer=theirs, pgqueuer_median=median(theirs))
        rows.append(row)
    emit({"bench": "enqueue", "jobs": args.jobs, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
