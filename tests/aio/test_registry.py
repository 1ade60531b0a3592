"""Registering handlers on the async manager (no database)."""

from __future__ import annotations

import pytest

from pgqueue_sync import (
    ConfigurationError,
    Context,
    InvalidEntrypointError,
    Job,
    PsycopgDriver,
    Settings,
)
from pgqueue_sync_aio import AsyncQueueManager


def manager() -> AsyncQueueManager:
    return AsyncQueueManager(PsycopgDriver("host=127.0.0.1 dbname=unused"), settings=Settings())


def test_names_are_validated_and_registered_once() -> None:
    qm = manager()
    with pytest.raises(InvalidEntrypointError):
        qm.entrypoint("not a name")

    @qm.entrypoint("x")
    async def handler(job: Job) -> None:
        pass

    with pytest.raises(ConfigurationError, match="already registered"):
        qm.entrypoint("x")
    with pytest.raises(TypeError, match="must decorate a function"):
        qm.entrypoint("y")(42)  # type: ignore[type-var]


def test_async_callables_of_every_shape_are_run_on_the_loop() -> None:
    qm = manager()

    class Handler:
        async def __call__(self, job: Job, ctx: Context) -> None:
            pass

    @qm.entrypoint("function")
    async def function(job: Job) -> None:
        pass

    instance = Handler()
    qm.entrypoint("instance")(instance)

    @qm.entrypoint("plain")
    def plain(job: Job) -> None:
        pass

    entries = qm.entrypoints
    assert entries["function"].func is function
    assert entries["function"].takes_context is False
    assert entries["instance"].func is instance
    assert entries["instance"].takes_context is True
    assert entries["plain"].func is plain
    # The sync core holds a plain function for each async handler, and the handler itself
    # for a plain one.
    inner = qm.sync.entrypoints
    assert inner["function"].func is not function
    assert inner["function"].func.__name__ == "function"
    assert inner["plain"].func is plain
