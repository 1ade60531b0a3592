"""The async classes mirror the sync ones: same public names, same parameters.

Written over every public member of the sync classes, so a method added to the sync core
fails here until its async counterpart exists.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from pgqueue_sync import PsycopgDriver, Queries, QueueManager, Settings
from pgqueue_sync_aio import AsyncQueries, AsyncQueueManager

# Sync methods that stay plain functions on the async class (a decorator, or a setting,
# is not awaited).
STAYS_SYNC = {"entrypoint", "periodic", "add_hooks", "add_enqueue_hooks", "task"}
# Methods whose async counterpart returns the async kind of what the sync one returns: the
# return annotation is the sync one with these names replaced.
ASYNC_RETURNS = {"task": ("Task[", "AsyncTask[")}


def public_members(cls: type) -> dict[str, Any]:
    return {
        name: member
        for name, member in inspect.getmembers(cls)
        if not name.startswith("_") and (callable(member) or isinstance(member, property))
    }


def parameters(func: Any) -> list[tuple[str, Any, Any, Any]]:
    """Each parameter's name, kind, default and annotation (as written), and the return."""
    sig = inspect.signature(func)
    params = [(p.name, p.kind, p.default, p.annotation) for p in sig.parameters.values()]
    return [*params, ("return", None, None, sig.return_annotation)]


PAIRS = [
    pytest.param(QueueManager, AsyncQueueManager, id="QueueManager"),
    pytest.param(Queries, AsyncQueries, id="Queries"),
]


@pytest.mark.parametrize(("sync_cls", "async_cls"), PAIRS)
def test_every_public_member_has_its_async_counterpart(sync_cls: type, async_cls: type) -> None:
    sync_members = public_members(sync_cls)
    async_members = public_members(async_cls)
    missing = sorted(set(sync_members) - set(async_members))
    assert not missing, f"{async_cls.__name__} lacks {missing}"
    for name, member in sync_members.items():
        counterpart = async_members[name]
        if isinstance(member, type):  # a class attribute (worker_class): settable on both
            assert isinstance(counterpart, property), f"{name} must be a property"
            assert counterpart.fset is not None, f"{name} setter"
            continue
        if isinstance(member, property):
            assert isinstance(counterpart, property), f"{name} must stay a property"
            assert (member.fset is None) == (counterpart.fset is None), f"{name} setter"
            continue
        expected = parameters(member)
        if name in ASYNC_RETURNS:
            *params, (label, kind, default, returned) = expected
            assert isinstance(returned, str), name
            returned = returned.replace(*ASYNC_RETURNS[name])
            expected = [*params, (label, kind, default, returned)]
        assert parameters(counterpart) == expected, f"{async_cls.__name__}.{name}"
        if name in STAYS_SYNC:
            assert not inspect.iscoroutinefunction(counterpart), name
        else:
            assert inspect.iscoroutinefunction(counterpart), f"{name} must be awaitable"


def test_the_managers_take_the_same_arguments() -> None:
    assert parameters(AsyncQueueManager.__init__) == parameters(QueueManager.__init__)


def test_public_attributes_of_instances_are_there_too() -> None:
    driver = PsycopgDriver("host=127.0.0.1 dbname=unused")  # never connects
    settings = Settings(schema="parity")
    sync_qm = QueueManager(driver, settings=settings)
    async_qm = AsyncQueueManager(driver, settings=settings)
    for sync_obj, async_obj in [(sync_qm, async_qm), (sync_qm.queries, async_qm.queries)]:
        attributes = [name for name in vars(sync_obj) if not name.startswith("_")]
        assert attributes  # the check is not vacuous
        for name in attributes:
            assert hasattr(async_obj, name), f"{type(async_obj).__name__}.{name}"
    assert async_qm.driver is driver
    assert async_qm.settings == settings
    assert async_qm.queries.settings == settings
