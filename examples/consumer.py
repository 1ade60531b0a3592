"""A worker process: runs handlers until SIGINT/SIGTERM, then stops gracefully.

    PGQUEUE_DSN=postgresql://localhost/app python examples/consumer.py          # forever
    PGQUEUE_DSN=postgresql://localhost/app python examples/consumer.py --drain  # until empty

Run as many of these as you like, on as many machines: they share the queue safely.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
from datetime import timedelta

from pgqueue_sync import Job, PsycopgDriver, QueueManager


def build() -> QueueManager:
    qm = QueueManager(PsycopgDriver(os.environ.get("PGQUEUE_DSN", "")))

    @qm.entrypoint("send_email")
    def send_email(job: Job) -> None:
        message = json.loads(job.payload or b"{}")
        print(f"[job {job.id}] sending email to {message['to']}")

    @qm.entrypoint("send_report")
    def send_report(job: Job) -> None:
        print(f"[job {job.id}] building the {(job.payload or b'').decode()} report")

    return qm


def main() -> None:
    logging.basicConfig(level=logging.INFO)
    qm = build()

    def stop(signum: int, frame: object) -> None:
        qm.alive = False

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    qm.run(
        mode="drain" if "--drain" in sys.argv else "continuous",
        workers=8,
        shutdown_timeout=timedelta(seconds=25),  # inside Kubernetes' 30 s grace period
    )


if __name__ == "__main__":
    main()
