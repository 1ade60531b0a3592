"""A plain script that enqueues work: run it from cron, a shell, or another program.

    PGQUEUE_DSN=postgresql://localhost/app python examples/producer.py 100

Pair it with examples/consumer.py, which runs the handlers.
"""

from __future__ import annotations

import json
import os
import sys
from datetime import timedelta

from pgqueue_sync import PsycopgDriver, QueueManager


def main(count: int) -> None:
    driver = PsycopgDriver(os.environ.get("PGQUEUE_DSN", ""))
    # A producer registers no handlers, so any entrypoint name may be enqueued.
    qm = QueueManager(driver)
    qm.queries.install()  # idempotent; normally done once at deploy time (`pgq-sync install`)
    payloads = [json.dumps({"to": f"user{i}@example.com"}).encode() for i in range(count)]
    ids = qm.queries.enqueue(["send_email"] * count, payloads)
    # A job can wait: this one becomes due in 10 seconds.
    ids += qm.queries.enqueue("send_report", b"daily", execute_after=timedelta(seconds=10))
    print(f"enqueued {len(ids)} jobs (ids {ids[0]}..{ids[-1]})")
    driver.close()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 10)
