from __future__ import annotations

import threading
import uuid
from datetime import datetime, timezone

import pytest

from pgqueue_sync.engine.buffer import BufferClosed, CompletionBuffer, JobBuffer, Mailbox
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
