"""Workers built as ``run()`` builds them, driven by hand in the test's thread."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable, Iterator
from datetime import timedelta

from pgqueue_sync import QueueManager
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.buffer import Mailbox
from pgqueue_sync.options import RunOptions
from tests.stateful.harness import close_worker


@contextlib.contextmanager
def stepped_workers(
    qm: QueueManager, retry_timer: float | timedelta
) -> Iterator[Callable[[], Worker]]:
    """A maker of workers of ``qm`` with no heartbeat unless a test beats (so moving the
    clock past ``retry_timer`` lets another worker, or the same one, re-claim their jobs);
    every worker made is closed at the end."""
    made: list[Worker] = []
    options = RunOptions.build(
        dequeue_timeout=3600.0,
        batch_size=10,
        retry_timer=retry_timer,
        workers=1,
        buffer_size=10,
        shutdown_timeout=None,
        mode="continuous",
        heartbeat_interval=None,
    )

    def make() -> Worker:
        worker = Worker(
            driver=qm.driver,
            settings=qm.settings,
            clock=qm.clock,
            registry=qm.entrypoints,
            options=options,
            shutdown=threading.Event(),
            mailbox=Mailbox(),
        )
        made.append(worker)
        return worker

    try:
        yield make
    finally:
        for worker in made:
            close_worker(worker)
