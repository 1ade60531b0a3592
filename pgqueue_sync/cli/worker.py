"""One worker process of ``pgq-sync run``: run the application's queue manager until told
to stop, as a command line program should.

- SIGTERM or SIGINT: a graceful stop (no more claims; held jobs finish, within
  ``--shutdown-timeout`` if given); exit code 0. A second one: stop now (exit code 130;
  what was running goes back to the queue after ``retry_timer``).
- ``--max-jobs`` / ``--max-memory``: once reached, the process stops gracefully and exits;
  under a supervisor (``--processes``) with :data:`EXIT_RECYCLE`, so that it is replaced.
- Under a supervisor, a socket connects the two: the worker writes ``ready`` on it once it
  claims (connected, schema verified, threads started), and stops gracefully if the
  supervisor goes away (end of file).

A front end with its own command (``flask pgq worker``) can run a manager the same way with
:class:`WorkerProcess`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import queue
import resource
import signal
import socket
import threading
from collections.abc import Callable, Iterator
from functools import partial
from types import FrameType
from typing import Any

from pgqueue_sync.clock import now_real
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.hooks import WorkerHooks
from pgqueue_sync.errors import PgQueueError
from pgqueue_sync.models import Job, Outcome
from pgqueue_sync.qm import QueueManager

from .context import EXIT_INTERRUPTED
from .loader import AnyManager, sync_manager

__all__ = ["EXIT_RECYCLE", "Recycle", "WorkerProcess", "rss_bytes"]

logger = logging.getLogger(__name__)

# A supervised worker that reached --max-jobs or --max-memory exits with this (EX_TEMPFAIL)
# after finishing what it held: its supervisor replaces it at once.
EXIT_RECYCLE = 75
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
MEMORY_CHECK_INTERVAL = 0.5


def rss_bytes() -> int:
    """This process's resident memory (Linux: now; elsewhere: its peak so far)."""
    try:
        with open("/proc/self/statm", encoding="ascii") as statm:
            return int(statm.read().split()[1]) * resource.getpagesize()
    except (OSError, IndexError, ValueError):
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return peak if os.uname().sysname == "Darwin" else peak * 1024


@dataclasses.dataclass(frozen=True)
class Recycle:
    """When a worker process finishes what it holds and exits, to be replaced."""

    max_jobs: int | None = None
    max_memory_mb: int | None = None


class _RecycleWatch:
    """Counts jobs run and looks at memory (every half second at most); calls ``reached``
    once, when a limit is reached."""

    def __init__(self, recycle: Recycle, reached: Callable[[str], None]) -> None:
        self._recycle = recycle
        self._reached = reached
        self._lock = threading.Lock()
        self._jobs = 0
        self._next_check = 0.0
        self._done = False

    def after_job(self) -> None:
        recycle = self._recycle
        with self._lock:
            self._jobs += 1
            if self._done:
                return
            reason = None
            if recycle.max_jobs is not None and self._jobs >= recycle.max_jobs:
                reason = f"ran {self._jobs} jobs (--max-jobs {recycle.max_jobs})"
            elif recycle.max_memory_mb is not None and now_real() >= self._next_check:
                self._next_check = now_real() + MEMORY_CHECK_INTERVAL
                used = rss_bytes() / 2**20
                if used >= recycle.max_memory_mb:
                    reason = f"uses {used:.0f} MB (--max-memory {recycle.max_memory_mb})"
            if reason is None:
                return
            self._done = True
        self._reached(reason)


class _CliHooks(WorkerHooks):
    """Says when the worker is ready (connected, schema verified, threads up: about to
    claim) and counts the jobs it runs."""

    def __init__(self, watch: _RecycleWatch, on_ready: Callable[[], None]) -> None:
        self._watch = watch
        self._on_ready = on_ready

    def worker_started(self, worker: Worker) -> None:
        self._on_ready()

    def job_finished(self, job: Job, outcome: Outcome) -> None:
        self._watch.after_job()


class WorkerProcess:
    """Runs ``manager`` in this process with ``run_kwargs`` (the parameters of ``run()``)."""

    def __init__(
        self,
        manager: AnyManager,
        run_kwargs: dict[str, Any],
        *,
        recycle: Recycle = Recycle(),
        supervisor: socket.socket | None = None,
    ) -> None:
        self.manager = manager
        self.run_kwargs = run_kwargs
        self.recycle = recycle
        self.supervisor = supervisor
        self.recycled = False
        self._signals: queue.SimpleQueue[int] = queue.SimpleQueue()
        self._received = 0

    def main(self) -> int:
        """Run until stopped; return the exit code (0, 1, :data:`EXIT_RECYCLE` or 130)."""
        sync = sync_manager(self.manager)
        sync.add_hooks(_CliHooks(_RecycleWatch(self.recycle, self._recycle), self._ready))
        threading.Thread(target=self._report_signals, name="pgq-signals", daemon=True).start()
        if self.supervisor is not None:
            threading.Thread(
                target=self._watch_supervisor, name="pgq-lifeline", daemon=True
            ).start()
        try:
            with self._signal_handlers():
                self._run()
        except KeyboardInterrupt:
            logger.warning("stopped at once: jobs still held run again after retry_timer")
            return EXIT_INTERRUPTED
        except PgQueueError as exc:
            logger.error("the worker stopped: %s", exc)
            return 1
        if self.recycled and self.supervisor is not None:
            return EXIT_RECYCLE
        return 0

    def _run(self) -> None:
        if isinstance(self.manager, QueueManager):
            self.manager.run(**self.run_kwargs)
            return
        import anyio  # noqa: PLC0415

        anyio.run(partial(self.manager.run, **self.run_kwargs))

    # -- stopping --------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop gracefully (safe from a signal handler)."""
        self.manager.alive = False

    def _recycle(self, reason: str) -> None:
        self.recycled = True
        logger.info(
            "this worker process %s: finishing the jobs it holds, then exiting%s",
            reason,
            " to be replaced" if self.supervisor is not None else "",
        )
        self.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        # No logging here (it takes locks the interrupted code may hold): a thread reports.
        self._received += 1
        self._signals.put(signum)
        if self._received == 1:
            self.stop()
        else:
            raise KeyboardInterrupt

    def _report_signals(self) -> None:
        count = 0
        while True:
            signum = self._signals.get()
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                logger.info(
                    "%s received: stopping gracefully (held jobs finish; a second signal "
                    "stops at once)",
                    name,
                )
            else:
                logger.warning("%s received again: stopping at once", name)

    @contextlib.contextmanager
    def _signal_handlers(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {sig: signal.signal(sig, self._on_signal) for sig in STOP_SIGNALS}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    # -- the supervisor's socket -----------------------------------------------------------

    def _ready(self) -> None:
        if self.supervisor is None:
            return
        with contextlib.suppress(OSError):
            self.supervisor.sendall(b"ready\n")

    def _watch_supervisor(self) -> None:
        assert self.supervisor is not None
        with contextlib.suppress(OSError):
            while self.supervisor.recv(64):
                pass
        logger.warning("the supervisor is gone: stopping gracefully")
        self.stop()
