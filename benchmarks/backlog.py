"""Flat with backlog: the per-job cost of a claim with 1,000 vs 1,000,000 jobs queued.

    python -m benchmarks.backlog [--backlogs 1000,1000000] [--claims 300] [--batch-size 10]
                                 [--json PATH]

For each backlog: load it (COPY), VACUUM ANALYZE, then time ``--claims`` claims of
``--batch-size`` jobs with the worker's own statement (``Queries.dequeue``, in a session
set up as a worker's fetch connection), then, untimed, write the batch's outcomes
(``Queries.complete``) and enqueue as many jobs again, so the backlog stays the same. The
claim walks the partial index in order and stops after the batch, so its cost should not
depend on how many jobs wait behind it.
"""

from __future__ import annotations

from typing import Any

from .common import (
    base_parser,
    claim_cycles,
    emit,
    installed_queue,
    load_jobs,
    median,
    vacuum_analyze,
)


def claim_cost(dsn: str, backlog: int, claims: int, batch_size: int) -> dict[str, Any]:
    with installed_queue(dsn, "backlog") as (settings, queries):
        load_jobs(queries, backlog, chunk=50_000)
        vacuum_analyze(dsn, settings)
        cycles = list(claim_cycles(dsn, settings, queries, claims, batch_size))
    return {
        "backlog": backlog,
        "claimed": sum(n for n, _, _ in cycles),
        "batch_size": batch_size,
        "per_job_us": median([claim / n for n, claim, _ in cycles]) * 1e6,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "backlog")
    parser.add_argument("--backlogs", default="1000,1000000")
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=10)
    args = parser.parse_args()
    backlogs = [int(s) for s in args.backlogs.split(",") if s]
    rows = [claim_cost(args.dsn, b, args.claims, args.batch_size) for b in backlogs]
    result: dict[str, Any] = {"bench": "backlog", "rows": rows}
    if len(rows) >= 2 and rows[0]["per_job_us"] > 0:
        result["ratio"] = rows[-1]["per_job_us"] / rows[0]["per_job_us"]
    emit(result, args.json)


if __name__ == "__main__":
    main()
