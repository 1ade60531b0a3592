"""The reference example: enqueue 1000 jobs and process them; Ctrl-C stops gracefully.

Run `pgq-sync install` once first. The connection comes from libpq's environment variables
(PGHOST, PGUSER, PGDATABASE, ...); the queue's schema from PGQUEUE_SCHEMA (default public).
"""

import signal

import psycopg

from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.models import Job
from pgqueue_sync.qm import QueueManager


def main() -> None:
    connection = psycopg.connect(autocommit=True)  # libpq env vars / DSN
    driver = PsycopgDriver(connection)
    qm = QueueManager(driver)

    def handle_signal(signum: object, frame: object) -> None:
        qm.alive = False  # graceful shutdown

    signal.signal(signal.SIGINT, handle_signal)

    @qm.entrypoint("fetch")
    def process_message(job: Job) -> None:
        print(f"Processed message: {job}")

    N = 1_000
    qm.queries.enqueue(["fetch"] * N, [f"this is from me: {n}".encode() for n in range(N)], [0] * N)
    qm.run()


if __name__ == "__main__":
    main()
