"""Flat with the log: claim and completion cost with 1M rows in the log table vs none.

    python -m benchmarks.log_growth [--log-rows 0,1000000] [--claims 300] [--batch-size 10]
                                    [--backlog 1000] [--json PATH]

For each log size: a fresh queue with ``--backlog`` jobs queued and that many rows already
in the log table (finished jobs of the past, written in one INSERT; retention off: nothing
prunes them), VACUUM ANALYZE, then ``--claims`` rounds of: a claim of ``--batch-size`` jobs
(the worker's statement, in a session set up as a worker's fetch connection), timed; the
completion of those jobs (the worker's statement, which moves them to the log), timed; and,
untimed, as many jobs enqueued again. Medians per job of each; the ratios to the first log
size say whether a large log slows either down.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgqueue_sync.settings import Settings

from .common import (
    ENTRYPOINT,
    base_parser,
    claim_cycles,
    emit,
    installed_queue,
    load_jobs,
    median,
    vacuum_analyze,
)


def fill_log(dsn: str, settings: Settings, rows: int) -> None:
    """``rows`` finished jobs of the past in the log table (ids below every real job's)."""
    if rows <= 0:
        return
    with psycopg.connect(dsn, autocommit=True) as conn:
        log = settings.ident("log").as_string(conn)
        conn.execute(
            f"INSERT INTO {log} (job_id, entrypoint, status, priority, attempts, duration, "
            "enqueued, created, due) "
            f"SELECT -i, %s, 'successful', 0, 1, interval '1 ms', "
            "now() - interval '1 day' + i * interval '1 ms', "
            "now() - interval '1 day' + i * interval '1 ms', "
            "now() - interval '1 day' + i * interval '1 ms' "
            "FROM generate_series(1, %s) AS i",
            (ENTRYPOINT, rows),
        )
        conn.execute(f"VACUUM ANALYZE {log}")


def cost(dsn: str, log_rows: int, claims: int, batch_size: int, backlog: int) -> dict[str, Any]:
    with installed_queue(dsn, "loggrowth") as (settings, queries):
        load_jobs(queries, backlog)
        fill_log(dsn, settings, log_rows)
        vacuum_analyze(dsn, settings)
        cycles = list(claim_cycles(dsn, settings, queries, claims, batch_size))
    return {
        "log_rows": log_rows,
        "claims": len(cycles),
        "batch_size": batch_size,
        "claim_us": median([1e6 * claim / n for n, claim, _ in cycles]),
        "complete_us": median([1e6 * done / n for n, _, done in cycles]),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "log_growth")
    parser.add_argument("--log-rows", default="0,1000000")
    parser.add_argument("--claims", type=int, default=300)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--backlog", type=int, default=1000)
    args = parser.parse_args()
    sizes = [int(s) for s in args.log_rows.split(",") if s]
    rows = [cost(args.dsn, n, args.claims, args.batch_size, args.backlog) for n in sizes]
    for row in rows:
        print(
            f"log {row['log_rows']:,} rows: claim {row['claim_us']:.1f} us/job, completion "
            f"{row['complete_us']:.1f} us/job"
        )
    result: dict[str, Any] = {"bench": "log_growth", "rows": rows}
    if len(rows) >= 2:
        result["claim_ratio"] = rows[-1]["claim_us"] / rows[0]["claim_us"]
        result["complete_ratio"] = rows[-1]["complete_us"] / rows[0]["complete_us"]
    emit(result, args.json)


if __name__ == "__main__":
    main()
