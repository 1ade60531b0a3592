from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from pgqueue_sync import ConfigurationError, Job, QueueManager
from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.options import RunOptions

BASE: dict[str, Any] = {
    "dequeue_timeout": timedelta(seconds=30),
    "batch_size": 10,
    "retry_timer": timedelta(minutes=1),
    "workers": 4,
    "buffer_size": None,
    "shutdown_timeout": None,
    "mode": "continuous",
    "heartbeat_interval": None,
}


def build(**changes: Any) -> RunOptions:
    return RunOptions.build(**{**BASE, **changes})


def test_defaults() -> None:
    opts = build()
    assert opts.buffer_size == 20
    assert opts.heartbeat_interval == 10.0
    assert opts.claim_size == 10
    assert build(retry_timer=timedelta(seconds=5)).heartbeat_interval == 1.0
    assert build(retry_timer=None).retry_timer is None
    with pytest.raises(ConfigurationError, match="retry_timer"):
        build(retry_timer=0)  # None disables rescue; 0 would do it silently


def test_claims_never_exceed_the_buffer() -> None:
    assert build(batch_size=100, buffer_size=30).claim_size == 30


@pytest.mark.parametrize(
    "changes",
    [
        {"batch_size": 0},
        {"batch_size": True},
        {"workers": 0},
        {"buffer_size": 0},
        {"mode": "forever"},
        {"dequeue_timeout": -1},
        {"retry_timer": timedelta(seconds=10), "heartbeat_interval": 6},
    ],
)
def test_bad_options_are_rejected(changes: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        build(**changes)


def test_async_handlers_are_refused_with_a_pointer_to_the_async_manager() -> None:
    qm = QueueManager(PsycopgDriver("host=127.0.0.1"))

    with pytest.raises(TypeError, match="pgqueue_sync_aio"):

        @qm.entrypoint("a")
        async def handler(job: Job) -> None:
            pass

    class AsyncCallable:
        async def __call__(self, job: Job) -> None:
            pass

    with pytest.raises(TypeError, match="AsyncQueueManager"):
        qm.entrypoint("b")(AsyncCallable())


def test_entrypoints_register_once() -> None:
    qm = QueueManager(PsycopgDriver("host=127.0.0.1"))

    @qm.entrypoint("a")
    def handler(job: Job) -> None:
        pass

    with pytest.raises(ConfigurationError, match="already registered"):
        qm.entrypoint("a")(handler)
    assert set(qm.entrypoints) == {"a"}
    assert qm.entrypoints["a"].takes_context is False

    @qm.entrypoint("b")
    def with_context(job: Job, ctx: object) -> None:
        pass

    assert qm.entrypoints["b"].takes_context is True
