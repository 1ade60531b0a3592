"""The bounded job buffer, the completion buffer, and the fetcher's mailbox."""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterable

from pgqueue_sync.clock import Deadline
from pgqueue_sync.errors import ConfigurationError, PgQueueError
from pgqueue_sync.models import Job, Outcome

__all__ = ["BufferClosed", "CompletionBuffer", "JobBuffer", "Mailbox"]

# Jobs whose handlers take less than this on average (seconds) are left to the threads
# already awake: a sleeping thread costs a wake-up (a futex, and on a virtual machine an
# interrupt to another core) and then competes for the GIL, while the thread that is awake
# is back for the next job sooner than that.
SHORT_JOB = 0.0002
# How long buffered jobs may wait with no thread taking any (a handler that usually returns
# at once is running long) before every thread they need is woken: see JobBuffer.nudge.
STALL = 0.005


class BufferClosed(PgQueueError):
    """Raised by :meth:`JobBuffer.take` once the buffer is closed and empty."""


class JobBuffer(queue.Queue[Job]):
    """A bounded ``queue.Queue`` of claimed jobs waiting for a worker thread.

    Its bound is what keeps a worker's memory flat whatever the backlog. The fetcher only
    claims as many jobs as there is room for (``put_many`` refuses more), and ``on_room`` is
    called when a take makes the free room reach ``watermark``, so the fetcher can sleep
    while the buffer is full instead of polling it.

    How many sleeping threads a put wakes follows the handlers' recent durations
    (:meth:`ran`): one thread per job while they are long or unknown; while they are short,
    a single one, the threads already awake taking the rest. A short handler that runs long
    cannot hold the others back: :meth:`nudge`, called by the fetcher, wakes every thread
    the buffered jobs need once they have waited ``STALL`` seconds with no take, as
    ``monotonic`` (real time unless a test passes its own) tells.
    """

    def __init__(
        self,
        maxsize: int,
        *,
        watermark: int | None = None,
        on_room: Callable[[], None] | None = None,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if maxsize <= 0:
            raise ConfigurationError("a job buffer needs a positive bound")
        super().__init__(maxsize)
        self.watermark = min(maxsize, watermark if watermark is not None else 1)
        self._on_room = on_room
        self._closed = False
        self._monotonic = monotonic
        self._sleeping = 0  # takers waiting for a job
        self._progress = monotonic()  # the last take, or the put into an empty buffer
        self._typical: float | None = None  # recent handler durations, averaged (seconds)

    def ran(self, seconds: float) -> None:
        """A handler ran for ``seconds``: the average that decides how many threads a put
        wakes (an exponential moving average; a race between threads only loses a sample)."""
        typical = self._typical
        self._typical = seconds if typical is None else typical + (seconds - typical) / 4

    def short_jobs(self) -> bool:
        """Whether handlers have lately returned in less than ``SHORT_JOB`` on average."""
        typical = self._typical
        return typical is not None and typical < SHORT_JOB

    def nudge(self) -> float:
        """Wake the sleeping threads the buffered jobs need if no thread has taken one for
        ``STALL`` seconds; the seconds until it should be called again (inf: no need)."""
        with self.mutex:
            if not self.queue or not self._sleeping:
                return math.inf
            waited = self._monotonic() - self._progress
            if waited < STALL:
                return STALL - waited
            self.not_empty.notify(len(self.queue))
            return math.inf

    def wake_all(self) -> None:
        """Wake a sleeping thread for every buffered job (at shutdown: they must finish)."""
        with self.mutex:
            self.not_empty.notify(len(self.queue))

    def room(self) -> int:
        """Free slots."""
        with self.mutex:
            return self.maxsize - self._qsize()

    def put_many(self, jobs: Iterable[Job]) -> None:
        """Add claimed jobs; there must be room for all of them (never blocks)."""
        items = list(jobs)
        if not items:
            return
        with self.mutex:  # the Conditions' lock, taken without their Python-level __enter__
            if self._closed:
                raise BufferClosed("the job buffer is closed")
            if len(items) > self.maxsize - self._qsize():
                raise ConfigurationError(
                    f"{len(items)} jobs do not fit in the buffer "
                    f"({self.maxsize - self._qsize()} free of {self.maxsize})"
                )
            if not self.queue:
                self._progress = self._monotonic()
            self.queue.extend(items)  # what _put does, one job at a time
            self.unfinished_tasks += len(items)
            self.not_empty.notify(1 if self.short_jobs() else len(items))

    def put(self, item: Job, block: bool = True, timeout: float | None = None) -> None:
        """Add one claimed job, as :meth:`put_many` does: never blocks, refuses a job that
        does not fit (so no taker ever has a blocked put to wake)."""
        self.put_many([item])

    def take(self, timeout: float | None = None) -> Job | None:
        """The next job; None after ``timeout`` seconds; BufferClosed once closed and empty."""
        with self.mutex:  # the Conditions' lock (not_empty.wait needs it held)
            jobs = self.queue
            if not jobs:
                deadline = Deadline(timeout)  # only when there is something to wait for
                while not jobs:
                    if self._closed:
                        raise BufferClosed("the job buffer is closed")
                    remaining = deadline.remaining()
                    if remaining is not None and remaining <= 0:
                        return None
                    self._sleeping += 1
                    try:
                        self.not_empty.wait(remaining)
                    finally:
                        self._sleeping -= 1
            job: Job = jobs.popleft()
            self._progress = self._monotonic()
            room = self.maxsize - len(jobs)
        if room == self.watermark and self._on_room is not None:
            self._on_room()
        return job

    def jobs(self) -> list[Job]:
        """The jobs waiting, in the order they will be taken."""
        with self.mutex:
            return list(self.queue)

    def drain(self) -> list[Job]:
        """Remove and return every buffered job (to release them)."""
        with self.mutex:
            items = [self._get() for _ in range(self._qsize())]
            self.not_full.notify_all()
        if items and self._on_room is not None:
            self._on_room()
        return items

    def remove_if(self, predicate: Callable[[Job], bool]) -> list[Job]:
        """Remove and return the buffered jobs ``predicate`` selects (the others keep their
        order): a job is either taken by a worker thread or removed here, never both."""
        with self.mutex:
            kept: list[Job] = []
            removed: list[Job] = []
            while self._qsize():
                job = self._get()
                (removed if predicate(job) else kept).append(job)
            for job in kept:
                self._put(job)
            if removed:
                self.not_full.notify_all()
        if removed and self._on_room is not None:
            self._on_room()
        return removed

    def close(self) -> None:
        """No more puts; takers get BufferClosed once the buffer is empty."""
        with self.mutex:
            self._closed = True
            self.not_empty.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class CompletionBuffer:
    """Outcomes waiting to be written. The flusher takes everything pending at once, so
    completions batch themselves under load (group commit) and go out at once when idle."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._items: list[Outcome] = []
        self._closed = False
        self._waiting = 0  # takers waiting in take_all: only they need a notify

    def add(self, outcome: Outcome) -> None:
        with self._lock:  # the Condition's lock, without its Python-level __enter__
            self._items.append(outcome)
            if self._waiting:
                self._cond.notify()

    def poke(self) -> None:
        """Wake a waiting taker without adding anything (it has a new deadline to watch)."""
        with self._cond:
            self._cond.notify_all()

    def put_back(self, outcomes: list[Outcome]) -> None:
        """Return outcomes that could not be written, ahead of newer ones."""
        with self._cond:
            self._items[:0] = outcomes

    def take_all(self, timeout: float) -> list[Outcome]:
        """Everything pending, waiting up to ``timeout`` seconds for the first one."""
        with self._cond:
            if not self._items and not self._closed and timeout > 0:
                self._waiting += 1
                try:
                    self._cond.wait(timeout)
                finally:
                    self._waiting -= 1
            items, self._items = self._items, []
            return items

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed


class Mailbox:
    """Wake-ups for the fetcher: new jobs, buffer room, idle, stop.

    Built on ``queue.SimpleQueue``, whose ``put`` is reentrant: ``post`` is safe to call
    from a signal handler that interrupts the thread waiting in :meth:`wait`.
    """

    WAKE = "wake"
    ROOM = "room"
    IDLE = "idle"
    STOP = "stop"

    def __init__(self) -> None:
        self._queue: queue.SimpleQueue[str] = queue.SimpleQueue()

    def post(self, message: str) -> None:
        self._queue.put(message)

    def wait(self, timeout: float) -> set[str]:
        """The messages that arrived, waiting up to ``timeout`` seconds for the first."""
        received: set[str] = set()
        try:
            received.add(self._queue.get(timeout=max(0.0, timeout)))
        except queue.Empty:
            return received
        received.update(self.drain())
        return received

    def drain(self) -> set[str]:
        received: set[str] = set()
        while True:
            try:
                received.add(self._queue.get_nowait())
            except queue.Empty:
                return received
