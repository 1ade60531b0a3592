"""The bare-SQL ceiling: pgbench runs a claim-and-complete cycle on the queue's own table.

    python -m benchmarks.ceiling [--batch-sizes 10,100] [--seconds 5] [--clients 4]
                                 [--threads 2] [--json PATH]

The table, its indexes and the log table are the real ones (``Queries.install`` in a
fresh schema). Each pgbench transaction claims ``batch`` due jobs in priority order with
FOR UPDATE SKIP LOCKED (one statement, as a worker does), then deletes them and logs them
(a second statement, as the flusher does), prepared (``-M prepared``). Nothing runs in
Python: no handler, no buffer, no threads. Jobs/s is the log rows written per second.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from typing import Any

import psycopg

from .common import base_parser, emit, installed_queue, load_jobs, median, vacuum_analyze

CLAIM = """\
WITH c AS (
  SELECT id FROM {jobs}
  WHERE status = 'queued' AND execute_after <= now()
  ORDER BY priority DESC, execute_after, id
  LIMIT {batch}
  FOR UPDATE SKIP LOCKED
), claimed AS (
  UPDATE {jobs} j SET status = 'picked', worker_id = gen_random_uuid(),
    attempts = j.attempts + 1, heartbeat = now(), updated = now()
  FROM c WHERE j.id = c.id RETURNING j.id
)
SELECT COALESCE(array_agg(id), '{{}}') AS ids FROM claimed \\gset
"""

COMPLETE = """\
WITH removed AS (
  DELETE FROM {jobs} WHERE id = ANY(:ids::bigint[]) AND status = 'picked'
  RETURNING id, entrypoint, priority, attempts, worker_id, created, headers
)
INSERT INTO {log} (job_id, entrypoint, status, priority, attempts, worker_id, duration,
                   headers, enqueued)
SELECT id, entrypoint, 'successful', priority, attempts, worker_id, interval '0', headers,
       created
FROM removed;
"""


def pgbench_path() -> str | None:
    return shutil.which("pgbench") or (
        "/usr/bin/pgbench" if os.path.exists("/usr/bin/pgbench") else None
    )


def libpq_env(dsn: str) -> dict[str, str]:
    """PGHOST, PGPORT, ... for pgbench, from the conninfo."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    names = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "dbname": "PGDATABASE"}
    names["password"] = "PGPASSWORD"
    env = dict(os.environ)
    env.update({names[k]: str(v) for k, v in params.items() if k in names and v is not None})
    return env


def run_once(
    dsn: str,
    batch: int,
    seconds: float,
    clients: int,
    threads: int,
    pgbench: str,
    jobs: int | None = None,
) -> dict[str, Any]:
    if jobs is None:
        # Enough jobs that the queue never runs dry during the run.
        jobs = int(min(2_000_000, 50_000 + 120_000 * seconds * (1 if batch >= 50 else 0.5)))
    with installed_queue(dsn, "ceil") as (settings, queries):
        load_jobs(queries, jobs, chunk=50_000)
        vacuum_analyze(dsn, settings)
        idents = {
            "jobs": settings.ident("jobs").as_string(None),
            "log": settings.ident("log").as_string(None),
            "batch": str(batch),
        }
        with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as script:
            script.write(CLAIM.format(**idents) + COMPLETE.format(**idents))
        try:
            out = subprocess.run(
                [
                    pgbench,
                    "-n",
                    "-M",
                    "prepared",
                    "-f",
                    script.name,
                    "-c",
                    str(clients),
                    "-j",
                    str(threads),
                    "-T",
                    str(max(1, round(seconds))),
                ],
                env=libpq_env(dsn),
                capture_output=True,
                text=True,
                check=False,
            )
        finally:
            os.unlink(script.name)
        if out.returncode != 0:
            raise RuntimeError(f"pgbench failed: {out.stderr.strip()[-2000:]}")
        with psycopg.connect(dsn, autocommit=True) as conn:
            row = conn.execute(f"SELECT count(*) FROM {idents['log']}").fetchone()
            done = int(row[0]) if row else 0
    tps = re.search(r"tps = ([0-9.]+)", out.stdout)
    took = float(max(1, round(seconds)))
    return {
        # A queue that ran dry understates the ceiling: load more jobs (--jobs).
        "ran_dry": done >= jobs,
        "batch_size": batch,
        "jobs_done": done,
        "seconds": took,
        "jobs_per_s": done / took,
        "tps": float(tps.group(1)) if tps else None,
        "clients": clients,
        "threads": threads,
    }


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "ceiling")
    parser.add_argument("--batch-sizes", default="10,100")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--jobs", type=int, default=None, help="jobs loaded before each run")
    args = parser.parse_args()
    pgbench = pgbench_path()
    if pgbench is None:
        emit({"bench": "ceiling", "skipped": "pgbench not found"}, args.json)
        return
    rows = []
    for size in [int(s) for s in args.batch_sizes.split(",") if s]:
        values = [
            run_once(args.dsn, size, args.seconds, args.clients, args.threads, pgbench, args.jobs)[
                "jobs_per_s"
            ]
            for _ in range(args.runs)
        ]
        rows.append({"batch_size": size, "ceiling": values, "ceiling_median": median(values)})
    emit(
        {"bench": "ceiling", "clients": args.clients, "threads": args.threads, "rows": rows},
        args.json,
    )


if __name__ == "__main__":
    main()
