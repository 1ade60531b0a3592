"""A worker driven by hand, in the calling thread: the stages of ``run()`` without its
threads (no listener, no handler threads, no flusher thread).

Each :meth:`Stepper.step` claims the jobs that are due (as the fetcher does), runs their
handlers one after the other in the calling thread (as a handler thread does, through the
runner), and writes their outcomes (as the flusher does, fenced). The testing helpers'
``drain()`` is built on it; so can any tool that wants jobs run synchronously.

What the threads of ``run()`` do and a stepper does not: wake on NOTIFY (it claims when it
is told to), refresh heartbeats while a handler runs (a step's handler should not outlast
``retry_timer``), enforce handler timeouts (the calling thread cannot be abandoned), read
cancellations while a job runs, register the worker in the workers registry.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from types import TracebackType

from pgqueue_sync.clock import Clock
from pgqueue_sync.db import Driver
from pgqueue_sync.models import Job, Outcome
from pgqueue_sync.options import RunOptions
from pgqueue_sync.registry import Entrypoint
from pgqueue_sync.settings import Settings

from .buffer import Mailbox
from .hooks import HookList
from .worker import Worker

__all__ = ["Stepper"]


class Stepper:
    """A :class:`~pgqueue_sync.engine.Worker` built as ``run()`` builds it, stepped by hand
    (see the module docstring). Use it as a context manager, or call :meth:`close`.

    ``registry`` maps entrypoint names to their :class:`~pgqueue_sync.registry.Entrypoint`
    (``qm.entrypoints``); ``batch_size`` bounds the jobs one step claims.
    """

    def __init__(
        self,
        *,
        driver: Driver,
        settings: Settings,
        clock: Clock,
        registry: Mapping[str, Entrypoint],
        batch_size: int = 10,
        hooks: HookList | None = None,
    ) -> None:
        options = RunOptions.build(
            dequeue_timeout=1.0,
            batch_size=batch_size,
            retry_timer=60.0,
            workers=1,
            buffer_size=batch_size,
            shutdown_timeout=None,
            mode="drain",
            heartbeat_interval=None,
        )
        self.worker = Worker(
            driver=driver,
            settings=settings,
            clock=clock,
            registry=registry,
            options=options,
            shutdown=threading.Event(),
            mailbox=Mailbox(),
            hooks=hooks,
        )
        self._prepared = False

    def step(self) -> list[tuple[Job, Outcome]]:
        """Claim the jobs that are due (at most ``batch_size``), run each one's handler here,
        write their outcomes; return each job with its outcome, in the order run (an empty
        list: nothing was due). A handler's exception is its job's outcome, never raised
        here; a database error is (what was claimed runs again after ``retry_timer``)."""
        worker = self.worker
        if not self._prepared:
            worker.prepare()
            self._prepared = True
        claimed = worker.fetcher.fetch_once()
        ran: list[tuple[Job, Outcome]] = []
        for _ in claimed:
            job = worker.buffer.take(0)
            assert job is not None  # fetch_once put every claimed job in the buffer
            ran.append((job, worker.runner.run_job(job)))
            if job.lost:
                # A job counted as lost runs alone until its outcome is written; with no
                # flusher thread here, write it now, or the next such job would wait for ever.
                worker.flusher.flush()
        worker.flusher.flush()
        return ran

    def close(self) -> None:
        """Close the worker's connections."""
        worker = self.worker
        worker.buffer.close()
        worker.completions.close()
        for conn in worker.connections.values():
            conn.close()

    def __enter__(self) -> Stepper:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
