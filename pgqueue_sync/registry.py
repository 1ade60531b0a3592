"""Entrypoints: a handler and its policies, checked once, when it is registered."""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable
from datetime import timedelta
from typing import Any

from .cron import Schedule
from .errors import ConfigurationError, InvalidHandlerError
from .options import duration, positive_number
from .retry import RetryPolicy
from .settings import validate_entrypoint

__all__ = [
    "DEFAULT_MAX_LOST",
    "Entrypoint",
    "Policies",
    "check_handler",
    "entrypoint",
    "is_async_callable",
    "policies",
    "takes_context",
]

# How many times a job's worker may be lost while running it before the job is failed.
DEFAULT_MAX_LOST = 3


@dataclasses.dataclass(frozen=True)
class Policies:
    """What an entrypoint's jobs may do: retries, limits, a timeout, lost workers."""

    retry: RetryPolicy | None = None
    concurrency_limit: int | None = None
    per_worker_limit: int | None = None
    requests_per_second: float | None = None
    timeout: float | None = None
    max_lost: int | None = DEFAULT_MAX_LOST


@dataclasses.dataclass(frozen=True)
class Entrypoint:
    """A registered handler and its policies (those of :class:`Policies`)."""

    name: str
    func: Callable[..., object]
    takes_context: bool = False
    retry: RetryPolicy | None = None
    concurrency_limit: int | None = None
    per_worker_limit: int | None = None
    requests_per_second: float | None = None
    timeout: float | None = None
    max_lost: int | None = DEFAULT_MAX_LOST
    # Set by ``qm.periodic``: the schedule whose ticks enqueue this entrypoint's jobs.
    schedule: Schedule | None = None

    @property
    def globally_limited(self) -> bool:
        return self.concurrency_limit is not None or self.requests_per_second is not None

    @property
    def limited(self) -> bool:
        return self.globally_limited or self.per_worker_limit is not None


def _positive_int(value: object, label: str, what: str = "a positive int") -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigurationError(f"{label} must be {what}")


def policies(
    *,
    retry: RetryPolicy | None = None,
    concurrency_limit: int | None = None,
    per_worker_limit: int | None = None,
    requests_per_second: float | None = None,
    timeout: timedelta | float | None = None,
    max_lost: int | None = DEFAULT_MAX_LOST,
) -> Policies:
    """The policies, checked: ConfigurationError for a value that makes no sense."""
    _positive_int(concurrency_limit, "concurrency_limit")
    _positive_int(per_worker_limit, "per_worker_limit")
    _positive_int(max_lost, "max_lost", "a positive int, or None for no limit")
    if retry is not None and not isinstance(retry, RetryPolicy):
        raise ConfigurationError("retry must be a pgqueue_sync.RetryPolicy")
    return Policies(
        retry=retry,
        concurrency_limit=concurrency_limit,
        per_worker_limit=per_worker_limit,
        requests_per_second=None
        if requests_per_second is None
        else positive_number(requests_per_second, "requests_per_second"),
        timeout=None if timeout is None else duration(timeout, "timeout"),
        max_lost=max_lost,
    )


def entrypoint(
    name: str, func: object, rules: Policies, schedule: Schedule | None = None
) -> Entrypoint:
    """The registry entry of handler ``func`` for entrypoint ``name``; with ``schedule``
    (a periodic job's, whatever name it was declared under), its ticks enqueue the jobs."""
    validate_entrypoint(name)
    check_handler(name, func)
    assert callable(func)
    return Entrypoint(
        name,
        func,
        takes_context(func),
        **{field.name: getattr(rules, field.name) for field in dataclasses.fields(rules)},
        schedule=None if schedule is None else dataclasses.replace(schedule, name=name),
    )


def is_async_callable(func: object) -> bool:
    """True for an ``async def`` function, or an object whose ``__call__`` is one."""
    call = getattr(func, "__call__", None)  # noqa: B004 - async __call__ on instances
    return inspect.iscoroutinefunction(func) or (
        not inspect.isfunction(func) and call is not None and inspect.iscoroutinefunction(call)
    )


def takes_context(func: Callable[..., Any]) -> bool:
    """Whether a handler takes the job's Context as a second positional parameter."""
    try:
        params = list(inspect.signature(func).parameters.values())
    except (TypeError, ValueError):
        return False
    positional = [
        p
        for p in params
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty
    ]
    return len(positional) >= 2


def check_handler(name: str, func: object) -> None:
    """Refuse (InvalidHandlerError) a handler the engine could not call with a job:
    it must accept ``handler(job)`` or ``handler(job, ctx)``. Callables without a signature
    to check (some builtins) are accepted."""
    if not callable(func):
        raise InvalidHandlerError(
            f"@qm.entrypoint({name!r}) must decorate a function, not {type(func).__name__}"
        )
    try:
        signature = inspect.signature(func)
    except (TypeError, ValueError):
        return
    for args in ((None,), (None, None)):
        try:
            signature.bind(*args)
        except TypeError:
            continue
        return
    raise InvalidHandlerError(
        f"entrypoint {name!r}: {getattr(func, '__qualname__', func)!r}{signature} cannot be "
        "called with a job: a handler takes the job as its first positional parameter, and "
        "may take the job's Context as a second (handler(job) or handler(job, ctx))"
    )
