"""A worker process for the fault suite: runs jobs that record themselves in a ledger.

    python -m tests.faults.worker_proc DSN SCHEMA [--threads N] [--work-ms MS] ...

The handler of entrypoint "ledger" inserts (job id, attempt, pid) into SCHEMA.ledger on a
connection of its own, retrying through outages, then works for --work-ms. SIGTERM/SIGINT
stop the worker gracefully; at exit it prints its stats as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from datetime import timedelta
from typing import Any

import psycopg

from pgqueue_sync import Job, PsycopgDriver, QueueManager, Settings

LEDGER_DDL = "CREATE TABLE IF NOT EXISTS {schema}.ledger (job_id bigint, attempt int, pid int)"


class Ledger:
    def __init__(self, dsn: str, schema: str) -> None:
        self.dsn = dsn
        self.insert = f'INSERT INTO "{schema}".ledger (job_id, attempt, pid) VALUES (%s, %s, %s)'
        self.local = threading.local()

    def record(self, job: Job) -> None:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = getattr(self.local, "conn", None)
                if conn is None or conn.closed:
                    conn = self.local.conn = psycopg.connect(
                        self.dsn, autocommit=True, application_name="ledger", connect_timeout=3
                    )
                conn.execute(self.insert, (job.id, job.attempts, os.getpid()))
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                self.local.conn = None
                time.sleep(0.1)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--batch", type=int, default=10)
    parser.add_argument("--work-ms", type=float, default=0.0)
    parser.add_argument("--retry-timer", type=float, default=2.0)
    parser.add_argument("--stall-timeout", type=float, default=60.0)
    args = parser.parse_args()

    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )

    def thread_died(info: Any) -> None:
        print(f"THREAD DIED: {info.thread.name}: {info.exc_value!r}", file=sys.stderr, flush=True)

    threading.excepthook = thread_died
    qm = QueueManager(
        PsycopgDriver(args.dsn, stall_timeout=args.stall_timeout),
        settings=Settings(schema=args.schema),
    )
    ledger = Ledger(args.dsn, args.schema)
    work = args.work_ms / 1000

    @qm.entrypoint("ledger")
    def record(job: Job) -> None:
        ledger.record(job)
        if work:
            time.sleep(work)  # the job's work

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
    print(json.dumps(qm.last_stats.__dict__ if qm.last_stats else {}), flush=True)


if __name__ == "__main__":
    main()
