"""The operator's reads on a large queue: status, listings, job detail.

    python -m benchmarks.operations [--jobs 1000000] [--log 1000000] [--repeat 7] [--json PATH]

Fills a queue with ``--jobs`` jobs (a tenth deferred, one in a thousand failed, one in a
hundred thousand of a rare entrypoint) and a log of ``--log`` outcomes (one in a thousand
an exception), with plain INSERT ... SELECT, then times each read ``--repeat`` times
(median). What ``pgq-sync status``, ``jobs`` and ``dashboard`` cost on such a queue, and
the web dashboard's reads (``rates``: its charts; the log's rows span its last two hours).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import psycopg
from psycopg import sql

from pgqueue_sync import Queries

from .common import base_parser, emit, installed_queue, vacuum_analyze

FILL_JOBS = """
INSERT INTO {jobs} (entrypoint, status, execute_after, created)
SELECT (ARRAY['emails', 'invoices', 'reports', 'rare'])[
           CASE WHEN g %% 100000 = 0 THEN 4 ELSE 1 + g %% 3 END],
       (CASE WHEN g %% 1000 = 0 THEN 'failed' ELSE 'queued' END)::text::{status},
       now() + CASE WHEN g %% 10 = 0 THEN interval '1 hour' ELSE interval '0' END,
       now() - interval '2 minutes'
FROM generate_series(1, %(count)s) AS g
"""

FILL_LOG = """
INSERT INTO {log} (job_id, entrypoint, status, priority, attempts, enqueued, created, due,
                   duration)
SELECT 10000000 + g, 'emails',
       (CASE WHEN g %% 1000 = 0 THEN 'exception' ELSE 'successful' END)::text::{status}, 0, 1,
       now() - interval '1 hour', now() - (g %% 7200) * interval '1 second',
       now() - interval '1 hour', interval '10 ms'
FROM generate_series(1, %(count)s) AS g
"""


def timed(call: Callable[[], object], repeat: int) -> float:
    """Median milliseconds of ``repeat`` calls."""
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1000


def reads(queries: Queries) -> dict[str, Callable[[], object]]:
    failed_page = queries.list_jobs(status="failed", limit=50)
    deep = failed_page.jobs[-1].cursor if failed_page.jobs else None
    return {
        "status": queries.status,
        "workers": queries.workers,
        "queue_size": queries.queue_size,
        "jobs: first page": queries.list_jobs,
        "jobs: a page deep in the table": lambda: queries.list_jobs(cursor=100),
        "jobs --status queued": lambda: queries.list_jobs(status="queued"),
        "jobs --status failed": lambda: queries.list_jobs(status="failed"),
        "jobs --status failed, next page": lambda: queries.list_jobs(status="failed", cursor=deep),
        "jobs --entrypoint invoices (a third of the jobs)": lambda: queries.list_jobs(
            entrypoint="invoices"
        ),
        "jobs --entrypoint rare (1 in 100,000)": lambda: queries.list_jobs(entrypoint="rare"),
        "jobs --status successful (log)": lambda: queries.list_jobs(status="successful"),
        "jobs --status exception (log, 1 in 1,000)": lambda: queries.list_jobs(status="exception"),
        "jobs show": lambda: queries.job_detail(1),
        "rates: the last hour (web overview, first load)": lambda: queries.rates(60),
        "rates: the last 2 minutes (web overview, refresh)": lambda: queries.rates(2),
        "rates --entrypoint emails, the last hour": lambda: queries.rates(60, entrypoint="emails"),
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "operations")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--log", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with installed_queue(args.dsn, "ops") as (settings, queries):
        names = {k: settings.ident(k) for k in ("jobs", "log", "status")}
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL(FILL_JOBS).format(**names), {"count": args.jobs})
            conn.execute(sql.SQL(FILL_LOG).format(**names), {"count": args.log})
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(names["log"]))
        vacuum_analyze(args.dsn, settings)
        for name, call in reads(queries).items():
            results[name] = round(timed(call, args.repeat), 2)
    emit(
        {
            "bench": "operations",
            "jobs": args.jobs,
            "log": args.log,
            "repeat": args.repeat,
            "median_ms": results,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
