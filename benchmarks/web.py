"""The web dashboard's pages on a large queue, rendered through Flask's test client.

    python -m benchmarks.web [--jobs 1000000] [--log 1000000] [--repeat 7] [--json PATH]

Fills a queue as ``benchmarks.operations`` does (``--jobs`` jobs, a log of ``--log``
outcomes over the last two hours), then times each page and the overview's JSON (first
load: the last hour; refresh: the last two minutes) ``--repeat`` times (median): the whole
request, the statements and the template. Needs the ``web`` extra.
"""

from __future__ import annotations

from typing import Any

import psycopg
from psycopg import sql

from pgqueue_sync.web import create_app

from .common import base_parser, emit, installed_queue, vacuum_analyze
from .operations import FILL_JOBS, FILL_LOG, timed


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "web")
    parser.add_argument("--jobs", type=int, default=1_000_000)
    parser.add_argument("--log", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    results: dict[str, Any] = {}
    with installed_queue(args.dsn, "web") as (settings, queries):
        names = {k: settings.ident(k) for k in ("jobs", "log", "status")}
        with psycopg.connect(args.dsn, autocommit=True) as conn:
            conn.execute(sql.SQL(FILL_JOBS).format(**names), {"count": args.jobs})
            conn.execute(sql.SQL(FILL_LOG).format(**names), {"count": args.log})
            conn.execute(sql.SQL("VACUUM ANALYZE {}").format(names["log"]))
        vacuum_analyze(args.dsn, settings)
        client = create_app(queries, actions=True).test_client()
        deep = args.jobs // 2
        failed = queries.list_jobs(status="failed", limit=1).jobs[0].id
        pages = {
            "overview page": "/",
            "overview JSON, the last hour (first load)": "/api/overview.json?minutes=60",
            "overview JSON, the last 2 minutes (refresh)": "/api/overview.json?minutes=2",
            "jobs page": "/jobs",
            "jobs page, half-way down the table": f"/jobs?cursor={deep}",
            "jobs page, failed": "/jobs?status=failed",
            "jobs page, one entrypoint (a third of the jobs)": "/jobs?entrypoint=invoices",
            "jobs page, a rare entrypoint (1 in 100,000)": "/jobs?entrypoint=rare",
            "jobs page, successful (log)": "/jobs?status=successful",
            "job page": f"/jobs/{failed}",
            "workers page": "/workers",
            "paused page": "/paused",
        }
        for name, url in pages.items():
            response = client.get(url)
            assert response.status_code == 200, (url, response.status_code)

            def get(url: str = url) -> None:
                client.get(url).close()

            results[name] = round(timed(get, args.repeat), 2)
    emit(
        {
            "bench": "web",
            "jobs": args.jobs,
            "log": args.log,
            "repeat": args.repeat,
            "median_ms": results,
        },
        args.json,
    )


if __name__ == "__main__":
    main()
