"""A worker process with a handler that kills it: for the lost-worker tests.

    python -m tests.faults.poison_proc DSN SCHEMA [--threads N] [--batch N] [--work-ms MS]
        [--retry-timer S] [--max-lost N]

Entrypoint "poison" records its run in SCHEMA.runs, then ends the process with os._exit(1),
as a segfault or the OOM killer would. Entrypoint "innocent" records its run and works for
--work-ms. Each run is recorded with the job's attempt, rescued and lost counts and the
process id. SIGTERM/SIGINT stop the worker gracefully.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
import time
from datetime import timedelta

import psycopg

from pgqueue_sync import Job, PsycopgDriver, QueueManager, Settings

RUNS_DDL = "CREATE TABLE {schema}.runs (job_id bigint, attempt int, rescued int, lost int, pid int)"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--work-ms", type=float, default=100.0)
    parser.add_argument("--retry-timer", type=float, default=1.0)
    parser.add_argument("--max-lost", type=int, default=3)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)

    local = threading.local()
    insert = f'INSERT INTO "{args.schema}".runs VALUES (%s, %s, %s, %s, %s)'

    def record(job: Job) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(args.dsn, autocommit=True)
        conn.execute(insert, (job.id, job.attempts, job.rescued, job.lost, os.getpid()))

    qm = QueueManager(PsycopgDriver(args.dsn), settings=Settings(schema=args.schema))

    @qm.entrypoint("poison", max_lost=args.max_lost)
    def poison(job: Job) -> None:
        record(job)
        os._exit(1)

    @qm.entrypoint("innocent", max_lost=args.max_lost)
    def innocent(job: Job) -> None:
        record(job)
        time.sleep(args.work_ms / 1000)

    def stop(signum: int, frame: object) -> None:
        qm.alive = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    qm.run(
        workers=args.threads,
        batch_size=args.batch,
        retry_timer=timedelta(seconds=args.retry_timer),
        dequeue_timeout=5.0,
    )


if __name__ == "__main__":
    main()
