"""A worker process that declares one periodic job, for the multi-process schedule test.

    python -m tests.faults.periodic_proc DSN SCHEMA EXPRESSION

The handler of schedule "every_second" records (tick, execute_after, job id, pid) in
SCHEMA.ticks on a connection of its own. SIGTERM/SIGINT stop the worker gracefully; at exit
it prints how many ticks this process enqueued, as JSON on stdout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from datetime import datetime

import psycopg

from pgqueue_sync import Job, PsycopgDriver, QueueManager, Settings
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.hooks import WorkerHooks

TICKS_DDL = (
    'CREATE TABLE IF NOT EXISTS "{schema}".ticks '
    "(tick timestamptz, execute_after timestamptz, job_id bigint, pid int)"
)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("dsn")
    parser.add_argument("schema")
    parser.add_argument("expression")
    args = parser.parse_args()
    logging.basicConfig(
        level=logging.WARNING, stream=sys.stderr, format="%(asctime)s %(levelname)s %(message)s"
    )
    workers: list[Worker] = []

    class Counting(WorkerHooks):
        def worker_started(self, worker: Worker) -> None:
            workers.append(worker)

    qm = QueueManager(
        PsycopgDriver(args.dsn), settings=Settings(schema=args.schema), hooks=[Counting()]
    )
    local = threading.local()
    insert = f'INSERT INTO "{args.schema}".ticks VALUES (%s, %s, %s, %s)'

    @qm.periodic(args.expression, name="every_second")
    def record(job: Job) -> None:
        conn = getattr(local, "conn", None)
        if conn is None:
            conn = local.conn = psycopg.connect(args.dsn, autocommit=True)
        assert job.headers is not None
        tick = datetime.fromisoformat(job.headers["tick"])
        conn.execute(insert, (tick, job.execute_after, job.id, os.getpid()))

    def stop(signum: int, frame: object) -> None:
        qm.alive = False

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    print("ready", flush=True)
    qm.run(workers=2, dequeue_timeout=30.0)
    print(json.dumps({"enqueued": sum(w.scheduler.enqueued for w in workers)}), flush=True)


if __name__ == "__main__":
    main()
