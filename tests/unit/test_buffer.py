from __future__ import annotations

import contextlib
import math
import threading
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone

import pytest

from pgqueue_sync.engine.buffer import STALL, BufferClosed, CompletionBuffer, JobBuffer, Mailbox
from pgqueue_sync.models import Job, JobStatus, Outcome
from tests.conftest import eventually

NOW = datetime(2030, 1, 1, tzinfo=timezone.utc)
WORKER = uuid.uuid4()


def job(i: int) -> Job:
    return Job(i, 0, NOW, NOW, NOW, NOW, JobStatus.PICKED, "e", None, 1, WORKER)


def test_put_many_refuses_more_than_the_free_room() -> None:
    buf = JobBuffer(3)
    buf.put_many([job(1), job(2)])
    assert buf.room() == 1
    with pytest.raises(ValueError, match="do not fit"):
        buf.put_many([job(3), job(4)])
    assert buf.qsize() == 2


def test_take_is_fifo_and_times_out_when_empty() -> None:
    buf = JobBuffer(4)
    buf.put_many([job(1), job(2)])
    assert [buf.take(0), buf.take(0)] == [job(1), job(2)]
    assert buf.take(0.01) is None


def test_on_room_fires_when_room_reaches_the_watermark() -> None:
    calls: list[int] = []
    buf = JobBuffer(4, watermark=2, on_room=lambda: calls.append(buf.room()))
    buf.put_many([job(i) for i in range(4)])
    buf.take(0)
    assert calls == []
    buf.take(0)
    assert calls == [2]
    buf.take(0)
    assert calls == [2]


def test_close_wakes_blocked_takers_once_empty() -> None:
    buf = JobBuffer(2)
    buf.put_many([job(1)])
    buf.close()
    assert buf.take(0) == job(1)
    errors: list[BaseException] = []

    def taker() -> None:
        try:
            buf.take(None)
        except BufferClosed as exc:
            errors.append(exc)

    thread = threading.Thread(target=taker)
    thread.start()
    thread.join(5)
    assert not thread.is_alive()
    assert len(errors) == 1
    with pytest.raises(BufferClosed):
        buf.put_many([job(2)])


def test_drain_returns_everything_buffered() -> None:
    buf = JobBuffer(5)
    buf.put_many([job(i) for i in range(3)])
    assert [j.id for j in buf.drain()] == [0, 1, 2]
    assert buf.room() == 5


def test_completion_buffer_takes_all_pending_and_keeps_put_back_order() -> None:
    comp = CompletionBuffer()
    outcomes = [Outcome(i, 1, JobStatus.SUCCESSFUL, 0.0) for i in range(3)]
    for o in outcomes:
        comp.add(o)
    taken = comp.take_all(0)
    assert taken == outcomes
    comp.add(Outcome(9, 1, JobStatus.SUCCESSFUL, 0.0))
    comp.put_back(taken)
    assert [o.job_id for o in comp.take_all(0)] == [0, 1, 2, 9]
    assert comp.take_all(0.01) == []


def test_mailbox_collects_messages() -> None:
    box = Mailbox()
    assert box.wait(0.01) == set()
    box.post(Mailbox.WAKE)
    box.post(Mailbox.WAKE)
    box.post(Mailbox.STOP)
    assert box.wait(1) == {Mailbox.WAKE, Mailbox.STOP}
    assert box.drain() == set()


# -- how many sleeping threads a put wakes ---------------------------------------------------


class Takers:
    """Threads that each take one job and then hold it (a handler that runs on)."""

    def __init__(self, buf: JobBuffer, count: int) -> None:
        self.buf = buf
        self.taken: list[Job] = []
        self.lock = threading.Lock()
        self.release = threading.Event()
        self.threads = [threading.Thread(target=self._take, daemon=True) for _ in range(count)]
        for thread in self.threads:
            thread.start()
        assert eventually(lambda: buf._sleeping == count)

    def _take(self) -> None:
        try:
            got = self.buf.take()
        except BufferClosed:
            return
        if got is not None:
            with self.lock:
                self.taken.append(got)
        self.release.wait(10)

    def count(self) -> int:
        with self.lock:
            return len(self.taken)

    def stop(self) -> None:
        self.release.set()
        self.buf.close()
        for thread in self.threads:
            thread.join(5)


SHORT = [0.00001] * 5  # handlers that return at once


class Clock:
    """The buffer's monotonic clock, moved by hand: the stall rule is tested, not timed."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@contextlib.contextmanager
def taking(
    count: int, durations: Sequence[float] = SHORT
) -> Iterator[tuple[JobBuffer, Takers, Clock]]:
    """A buffer whose handlers ran for ``durations``, ``count`` threads asleep in take, and
    the buffer's clock."""
    clock = Clock()
    buf = JobBuffer(8, monotonic=clock)
    for seconds in durations:
        buf.ran(seconds)
    takers = Takers(buf, count)
    try:
        yield buf, takers, clock
    finally:
        takers.stop()


@pytest.mark.parametrize("durations", [[], [0.01] * 5, [*SHORT, 0.5]])
def test_a_put_wakes_a_thread_per_job_unless_handlers_are_short(durations: list[float]) -> None:
    # No duration yet, long ones, or a long one after short ones.
    with taking(3, durations) as (buf, takers, _):
        assert not buf.short_jobs()
        buf.put_many([job(1), job(2), job(3)])
        assert eventually(lambda: takers.count() == 3)


def test_short_handlers_leave_jobs_to_the_awake_thread_until_they_wait_too_long() -> None:
    with taking(3) as (buf, takers, clock):
        assert buf.short_jobs()
        buf.put_many([job(1), job(2), job(3)])
        assert eventually(lambda: takers.count() == 1)
        # One thread was woken; it holds its job (a short handler running long) and the
        # other two jobs wait, their threads asleep.
        assert buf._sleeping == 2
        assert buf.qsize() == 2
        clock.now += STALL / 5
        # Not yet: the fetcher is told when to look again.
        assert buf.nudge() == pytest.approx(STALL * 4 / 5)
        assert buf._sleeping == 2
        clock.now += STALL  # STALL seconds with no take
        assert buf.nudge() == math.inf
        assert eventually(lambda: takers.count() == 3)
        assert buf.nudge() == math.inf  # nothing buffered: nothing to watch


def test_a_put_into_an_empty_buffer_restarts_the_stall_clock() -> None:
    with taking(2) as (buf, takers, clock):
        clock.now += 60  # idle for a minute: no take, nothing buffered
        buf.put_many([job(1), job(2)])
        # At once, as the fetch loop does (the woken thread may not have taken its job
        # yet): the jobs have only just arrived, nothing is woken.
        assert buf.nudge() == pytest.approx(STALL)
        assert eventually(lambda: takers.count() == 1)
        assert buf._sleeping == 1
        assert buf.qsize() == 1


def test_wake_all_wakes_a_thread_per_buffered_job() -> None:
    with taking(3) as (buf, takers, _):
        buf.put_many([job(1), job(2), job(3)])
        assert eventually(lambda: takers.count() == 1)
        buf.wake_all()
        assert eventually(lambda: takers.count() == 3)
