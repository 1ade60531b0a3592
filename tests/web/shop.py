"""The shop: a known queue for the dashboard's tests (Flask's test client and a real browser).

``emails`` 3 queued (no worker serves them), ``reports`` 2 deferred by an hour, ``ok`` 2
successful, ``flaky`` 1 failed (its first attempt raises; once ``fixed`` is set it
succeeds), with a JSON payload and headers.
"""

from __future__ import annotations

import dataclasses
import threading
from datetime import timedelta

import tenacity

from pgqueue_sync import Job, QueueManager, RetryPolicy

GIVE_UP = RetryPolicy(stop=tenacity.stop_after_attempt(1))
PAYLOAD = b'{"order": 42, "items": ["tea", "milk"]}'
HEADERS = {"trace": "abc-123", "tenant": "north"}


@dataclasses.dataclass
class Shop:
    qm: QueueManager
    emails: list[int]
    reports: list[int]
    ok: list[int]
    flaky: int
    # Set: the flaky handler succeeds from then on.
    fixed: threading.Event


def open_shop(qm: QueueManager) -> Shop:
    """Fill ``qm``'s queue with the shop (a real worker runs ``ok`` and ``flaky``)."""
    fixed = threading.Event()

    @qm.entrypoint("ok")
    def ok(job: Job) -> str:
        return "done"

    @qm.entrypoint("flaky", retry=GIVE_UP)
    def flaky(job: Job) -> str:
        if not fixed.is_set():
            raise ValueError(f"order {job.id} failed: the warehouse is closed")
        return "shipped"

    ok_ids = qm.queries.enqueue(["ok"] * 2, [None] * 2)
    [flaky_id] = qm.queries.enqueue("flaky", PAYLOAD, headers=HEADERS)
    qm.run(mode="drain", dequeue_timeout=1.0, workers=2)
    producer = QueueManager(qm.driver, settings=qm.settings, check_entrypoints=False)
    emails = producer.queries.enqueue(["emails"] * 3, [b"\x00\x01binary\xff"] * 3)
    reports = producer.queries.enqueue(
        ["reports"] * 2, [b"monthly"] * 2, execute_after=timedelta(hours=1)
    )
    return Shop(qm, emails, reports, ok_ids, flaky_id, fixed)
