from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone

import pytest

from pgqueue_sync.engine.buffer import STALL, BufferClosed, CompletionBuffer, JobBuffer, Mailbox
from pgqueue_sync.models import Job, JobStatus, Outcome

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


def eventually(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.001)
    return True


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


@pytest.mark.parametrize("durations", [[], [0.01] * 5, [0.00001] * 5 + [0.5]])
def test_a_put_wakes_a_thread_per_job_unless_handlers_are_short(durations: list[float]) -> None:
    buf = JobBuffer(8)
    for seconds in durations:  # none yet, long ones, or a long one after short ones
        buf.ran(seconds)
    assert not buf.short_jobs()
    takers = Takers(buf, 3)
    try:
        buf.put_many([job(1), job(2), job(3)])
        assert eventually(lambda: takers.count() == 3)
    finally:
        takers.stop()


def test_short_handlers_leave_jobs_to_the_awake_thread_until_they_wait_too_long() -> None:
    buf = JobBuffer(8)
    for _ in range(5):
        buf.ran(0.00001)
    assert buf.short_jobs()
    takers = Takers(buf, 3)
    try:
        buf.put_many([job(1), job(2), job(3)])
        assert eventually(lambda: takers.count() == 1)
        # One thread was woken; it holds its job (a short handler running long) and the
        # other two jobs wait, their threads asleep.
        assert buf._sleeping == 2
        assert buf.qsize() == 2
        waited_for = buf.nudge()
        assert 0 < waited_for <= STALL  # not yet: the fetcher is told when to look again
        assert buf._sleeping == 2
        buf._progress -= STALL  # as if STALL seconds passed with no take
        assert buf.nudge() == math.inf
        assert eventually(lambda: takers.count() == 3)
        assert buf.nudge() == math.inf  # nothing buffered: nothing to watch
    finally:
        takers.stop()


def test_a_put_into_an_empty_buffer_restarts_the_stall_clock() -> None:
    buf = JobBuffer(8)
    for _ in range(5):
        buf.ran(0.00001)
    takers = Takers(buf, 2)
    try:
        buf._progress -= 60  # idle for a minute: no take, nothing buffered
        buf.put_many([job(1), job(2)])
        assert eventually(lambda: takers.count() == 1)
        assert 0 < buf.nudge() <= STALL  # the jobs have only just arrived
        assert buf.qsize() == 1
    finally:
        takers.stop()


def test_wake_all_wakes_a_thread_per_buffered_job() -> None:
    buf = JobBuffer(8)
    for _ in range(5):
        buf.ran(0.00001)
    takers = Takers(buf, 3)
    try:
        buf.put_many([job(1), job(2), job(3)])
        assert eventually(lambda: takers.count() == 1)
        buf.wake_all()
        assert eventually(lambda: takers.count() == 3)
    finally:
        takers.stop()
