"""Bad arguments get a typed error (a PgQueueError, with the builtin callers knew as a second
base) at the call that takes them, never a builtin error or a failure later in run()."""

from __future__ import annotations

import functools
import math
import socket
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

import pgqueue_sync
from pgqueue_sync import (
    ConfigurationError,
    Job,
    ManualClock,
    PgQueueError,
    PsycopgDriver,
    QueueManager,
    RetryRequested,
    Settings,
    current_context,
)
from pgqueue_sync.options import RunOptions
from pgqueue_sync_aio import AsyncQueries, AsyncQueueManager

INF, NAN = math.inf, math.nan


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


DSN = f"host=127.0.0.1 port={_closed_port()} connect_timeout=2"


def manager() -> QueueManager:
    return QueueManager(PsycopgDriver(DSN), settings=Settings(schema="nowhere"))


def refused(call: Callable[[], object], builtin: type[BaseException] = ValueError) -> str:
    """``call`` raises a PgQueueError that is also ``builtin``; returns its message."""
    with pytest.raises(PgQueueError) as info:
        call()
    assert isinstance(info.value, builtin), type(info.value).__mro__
    return str(info.value)


# -- typed errors, exported ------------------------------------------------------------------


def test_every_error_class_is_exported_and_derives_from_pgqueueerror() -> None:
    for name in (
        "AlreadyRunningError",
        "InvalidHandlerError",
        "InvalidStateError",
        "JobTimeoutError",
        "NoContextError",
    ):
        cls = getattr(pgqueue_sync, name)
        assert issubclass(cls, PgQueueError), name
        assert name in pgqueue_sync.__all__
    assert issubclass(pgqueue_sync.AlreadyRunningError, RuntimeError)
    assert issubclass(pgqueue_sync.InvalidStateError, RuntimeError)
    assert issubclass(pgqueue_sync.NoContextError, LookupError)
    assert issubclass(pgqueue_sync.InvalidHandlerError, ConfigurationError)
    assert issubclass(pgqueue_sync.InvalidHandlerError, TypeError)
    assert issubclass(pgqueue_sync.JobTimeoutError, TimeoutError)


def test_current_context_outside_a_handler() -> None:
    message = refused(current_context, LookupError)
    assert "inside a job handler" in message


def test_decorating_what_is_not_a_plain_function() -> None:
    qm = manager()
    refused(lambda: qm.entrypoint("a")(42), TypeError)  # type: ignore[type-var]

    async def handler(job: Job) -> None:
        pass

    assert "AsyncQueueManager" in refused(lambda: qm.entrypoint("b")(handler), TypeError)
    assert not qm.entrypoints


def test_retry_requested_with_a_bad_delay() -> None:
    for delay in (-1, INF, NAN, timedelta(days=-1)):
        refused(lambda d=delay: RetryRequested(d))  # type: ignore[misc]
    assert RetryRequested(0).delay == 0.0
    assert RetryRequested(timedelta(seconds=2)).delay == 2.0


def test_a_manual_clock_does_not_go_back() -> None:
    refused(lambda: ManualClock().advance(-1))


def test_async_queries_need_a_thread() -> None:
    qm = manager()
    refused(lambda: AsyncQueries(qm.queries, max_threads=0))


def test_an_async_handler_called_outside_run() -> None:
    aqm = AsyncQueueManager(PsycopgDriver(DSN), settings=Settings(schema="nowhere"))

    @aqm.entrypoint("a")
    async def handler(job: Job) -> None:
        pass

    call = aqm.sync.entrypoints["a"].func
    assert "run()" in refused(lambda: call(object()), RuntimeError)


# -- handlers that cannot take a job ---------------------------------------------------------


def no_args() -> None:
    pass


def three(job: Job, ctx: object, extra: object) -> None:
    pass


def keyword_only(job: Job, *, flag: bool) -> None:
    pass


@pytest.mark.parametrize("handler", [no_args, three, keyword_only, lambda: None])
def test_a_handler_that_cannot_take_a_job_is_refused_at_registration(
    handler: Callable[..., Any],
) -> None:
    qm = manager()
    message = refused(lambda: qm.entrypoint("a")(handler), TypeError)
    assert "'a'" in message
    assert "job" in message
    assert not qm.entrypoints

    aqm = AsyncQueueManager(PsycopgDriver(DSN), settings=Settings(schema="nowhere"))
    refused(lambda: aqm.entrypoint("a")(handler), TypeError)
    assert not aqm.entrypoints


async def async_no_args() -> None:
    pass


def test_an_async_handler_that_cannot_take_a_job_is_refused_too() -> None:
    aqm = AsyncQueueManager(PsycopgDriver(DSN), settings=Settings(schema="nowhere"))
    refused(lambda: aqm.entrypoint("a")(async_no_args), TypeError)
    assert not aqm.entrypoints


class CallableJob:
    def __call__(self, job: Job) -> None:
        pass


class Methods:
    def handle(self, job: Job, ctx: object) -> None:
        pass


def optional_context(job: Job, ctx: object = None) -> None:
    pass


def star_args(*args: Any) -> None:
    pass


def two_and_star(job: Job, ctx: object, *rest: Any, **kw: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("handler", "takes_context"),
    [
        (lambda job: None, False),
        (lambda job, ctx: None, True),
        (optional_context, False),
        (star_args, False),
        (two_and_star, True),
        (CallableJob(), False),
        (Methods().handle, True),
        (functools.partial(three, extra=1), True),
        (print, False),  # a builtin without a signature: accepted
    ],
)
def test_handlers_that_can_take_a_job_register(
    handler: Callable[..., Any], takes_context: bool
) -> None:
    qm = manager()
    qm.entrypoint("a")(handler)
    assert qm.entrypoints["a"].takes_context is takes_context


# -- timeouts that are infinite, NaN or zero -------------------------------------------------

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


@pytest.mark.parametrize(
    "changes",
    [
        {"dequeue_timeout": INF},
        {"dequeue_timeout": NAN},
        {"dequeue_timeout": 0},
        {"dequeue_timeout": timedelta(0)},
        {"dequeue_timeout": "5"},
        {"heartbeat_interval": INF},
        {"heartbeat_interval": NAN},
        {"heartbeat_interval": 0},
        {"heartbeat_interval": INF, "retry_timer": None},
        {"retry_timer": 0},
        {"retry_timer": timedelta(0)},
        {"retry_timer": NAN},
        {"retry_timer": INF},
        {"retry_timer": timedelta.max},
        {"shutdown_timeout": INF},
        {"shutdown_timeout": NAN},
        {"shutdown_timeout": -1},
        {"log_retention": INF},
        {"log_retention": NAN},
        {"log_retention": 0},
        {"log_retention": timedelta.max},
    ],
    ids=repr,
)
def test_infinite_nan_or_zero_run_options_are_refused(changes: dict[str, Any]) -> None:
    message = refused(lambda: RunOptions.build(**{**BASE, **changes}))
    assert next(iter(changes)) in message


def test_meaningful_run_options_are_kept() -> None:
    opts = RunOptions.build(**{**BASE, "retry_timer": None, "shutdown_timeout": 0})
    assert opts.retry_timer is None
    assert opts.shutdown_timeout == 0.0
    opts = RunOptions.build(**{**BASE, "dequeue_timeout": 0.05, "log_retention": 3600})
    assert opts.dequeue_timeout == 0.05
    assert opts.log_retention == timedelta(hours=1)


def test_run_refuses_bad_timeouts_before_connecting() -> None:
    qm = manager()

    @qm.entrypoint("a")
    def handler(job: Job) -> None:
        pass

    for kwargs in ({"dequeue_timeout": INF}, {"heartbeat_interval": INF}, {"retry_timer": 0}):
        refused(lambda k=kwargs: qm.run(**k))  # type: ignore[misc]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": INF},
        {"timeout": NAN},
        {"timeout": 0},
        {"timeout": timedelta.max},
        {"requests_per_second": INF},
        {"requests_per_second": NAN},
        {"requests_per_second": 0},
    ],
    ids=repr,
)
def test_entrypoint_limits_that_are_infinite_nan_or_zero(kwargs: dict[str, Any]) -> None:
    qm = manager()
    message = refused(lambda: qm.entrypoint("a", **kwargs))
    assert next(iter(kwargs)) in message


@pytest.mark.parametrize("timeout", [INF, NAN, -1, timedelta.max, "1"], ids=repr)
def test_wait_for_with_a_bad_timeout(timeout: Any) -> None:
    refused(lambda: manager().queries.wait_for([1], timeout=timeout))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"connect_timeout": INF},
        {"connect_timeout": NAN},
        {"connect_timeout": 0},
        {"stall_timeout": INF},
        {"stall_timeout": NAN},
        {"stall_timeout": 0},
    ],
    ids=repr,
)
def test_driver_timeouts_that_are_infinite_nan_or_zero(kwargs: dict[str, Any]) -> None:
    message = refused(lambda: PsycopgDriver(DSN, **kwargs))
    assert next(iter(kwargs)) in message
