"""The API reference is generated from the docstrings: every public name has one, the
records' fields are documented, and a documented callable names all of its parameters.

Docstrings follow the Google style (``Args:``, ``Returns:``, ``Raises:``, ``Attributes:``),
as mkdocs.yml tells mkdocstrings; `mkdocs build --strict` in .ci/run checks that they parse.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from pgqueue_sync import QueueManager

# The modules whose public names the reference documents: their __all__, and WorkerHooks.
PUBLIC_MODULES = [
    "pgqueue_sync",
    "pgqueue_sync_aio",
    "pgqueue_sync.testing",
    "pgqueue_sync.contrib.flask",
    "pgqueue_sync.web",
    "pgqueue_sync.metrics",
    "pgqueue_sync.tracing",
]
EXTRA_NAMES = [("pgqueue_sync.engine.hooks", "WorkerHooks")]
OURS = ("pgqueue_sync", "pgqueue_sync_aio")

# Callables whose docstring must have an Args section naming every parameter, whatever else.
MUST_DOCUMENT_ARGS = [
    ("pgqueue_sync", "QueueManager.run"),
    ("pgqueue_sync", "QueueManager.entrypoint"),
    ("pgqueue_sync", "QueueManager.periodic"),
    ("pgqueue_sync", "QueueManager.task"),
    ("pgqueue_sync", "QueueManager"),
    ("pgqueue_sync", "Queries.enqueue"),
    ("pgqueue_sync", "Queries.wait_for"),
    ("pgqueue_sync", "PsycopgDriver"),
    ("pgqueue_sync", "Task.enqueue"),
    ("pgqueue_sync_aio", "AsyncQueueManager.run"),
    ("pgqueue_sync_aio", "AsyncQueries.wait_for"),
    ("pgqueue_sync.testing", "drain"),
]

SECTION = re.compile(r"^(\w[\w ]*):\s*$")


def public_objects() -> Iterator[tuple[str, Any]]:
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        for name in module.__all__:
            if name.startswith("__"):
                continue
            obj = getattr(module, name)
            if getattr(obj, "__module__", "").split(".")[0] not in OURS:
                continue  # an alias of a builtin (JobId = int), documented where declared
            yield f"{module_name}.{name}", obj
    for module_name, name in EXTRA_NAMES:
        yield f"{module_name}.{name}", getattr(importlib.import_module(module_name), name)


def own_doc(obj: Any) -> str:
    """The object's own docstring (a class does not inherit its base's here)."""
    if isinstance(obj, property):
        obj = obj.fget
    doc = obj.__dict__.get("__doc__") if inspect.isclass(obj) else getattr(obj, "__doc__", None)
    return inspect.cleandoc(doc) if isinstance(doc, str) else ""


def documented_by_a_base(cls: type, name: str) -> bool:
    """An override of a method one of the package's base classes documents (a worker hook,
    say) keeps that documentation."""
    return any(
        klass.__module__.split(".")[0] in OURS
        and name in vars(klass)
        and bool(own_doc(vars(klass)[name]))
        for klass in cls.__mro__[1:]
    )


def members(cls: type) -> Iterator[tuple[str, Any]]:
    """The public methods and properties a class defines or inherits from the package's own
    classes (not from object, Exception, enum, ...)."""
    seen: set[str] = set()
    for klass in cls.__mro__:
        if klass.__module__.split(".")[0] not in OURS:
            continue
        for name, attribute in vars(klass).items():
            if name.startswith("_") or name in seen:
                continue
            seen.add(name)
            value = attribute
            if isinstance(attribute, (staticmethod, classmethod)):
                value = attribute.__func__
            if inspect.isfunction(value) or isinstance(value, property):
                yield name, value


def section(doc: str, title: str) -> list[str] | None:
    """The names a Google-style section lists (``name (type): text`` or ``name: text``)."""
    lines = doc.splitlines()
    for i, line in enumerate(lines):
        if line.strip() == f"{title}:" and not line.startswith(" "):
            names = []
            for entry in lines[i + 1 :]:
                if entry and not entry.startswith(" "):
                    break
                match = re.match(r"^ {4}(\*{0,2}\w+)(?: \([^)]*\))?:", entry)
                if match:
                    names.append(match.group(1).lstrip("*"))
            return names
    return None


def parameters(func: Callable[..., Any]) -> list[str]:
    params = list(inspect.signature(func).parameters.values())
    return [p.name for p in params if p.name not in ("self", "cls")]


def resolve(module_name: str, dotted: str) -> Any:
    obj: Any = importlib.import_module(module_name)
    for part in dotted.split("."):
        obj = inspect.getattr_static(obj, part) if inspect.isclass(obj) else getattr(obj, part)
    return obj


OBJECTS = list(public_objects())


@pytest.mark.parametrize(("name", "obj"), OBJECTS, ids=[name for name, _ in OBJECTS])
def test_public_name_has_a_docstring(name: str, obj: Any) -> None:
    assert own_doc(obj), f"{name} has no docstring"
    if inspect.isclass(obj):
        missing = [
            member
            for member, value in members(obj)
            if not own_doc(value) and not documented_by_a_base(obj, member)
        ]
        assert not missing, f"{name}: no docstring on {missing}"


DATACLASSES = [(name, obj) for name, obj in OBJECTS if dataclasses.is_dataclass(obj)]


@pytest.mark.parametrize(("name", "cls"), DATACLASSES, ids=[name for name, _ in DATACLASSES])
def test_record_fields_are_documented(name: str, cls: type) -> None:
    documented = section(own_doc(cls), "Attributes")
    assert documented is not None, f"{name}: no Attributes section"
    fields = [f.name for f in dataclasses.fields(cls) if not f.name.startswith("_")]
    assert [f for f in fields if f not in documented] == [], f"{name}: fields undocumented"
    assert [d for d in documented if d not in fields] == [], f"{name}: documents no such field"


def documented_callables() -> Iterator[tuple[str, Any]]:
    for name, obj in OBJECTS:
        if inspect.isclass(obj):
            if not dataclasses.is_dataclass(obj):
                yield name, obj
            for member, value in members(obj):
                if inspect.isfunction(value):
                    yield f"{name}.{member}", value
        elif callable(obj):
            yield name, obj


CALLABLES = list(documented_callables())


@pytest.mark.parametrize(("name", "func"), CALLABLES, ids=[name for name, _ in CALLABLES])
def test_args_section_names_every_parameter(name: str, func: Any) -> None:
    """Where a docstring has an Args section, it names each parameter, and no other."""
    doc = own_doc(func)
    target = func.__init__ if inspect.isclass(func) else func
    if inspect.isclass(func) and "__init__" not in vars(func):
        return
    documented = section(doc, "Args")
    if documented is None:
        return
    params = parameters(target)
    assert [p for p in params if p not in documented] == [], f"{name}: parameters undocumented"
    assert [d for d in documented if d not in params] == [], f"{name}: no such parameters"


@pytest.mark.parametrize(("module", "dotted"), MUST_DOCUMENT_ARGS)
def test_main_calls_document_every_parameter(module: str, dotted: str) -> None:
    obj = resolve(module, dotted)
    target = obj.__init__ if inspect.isclass(obj) else obj
    documented = section(own_doc(obj), "Args")
    assert documented is not None, f"{dotted}: no Args section"
    assert [p for p in parameters(target) if p not in documented] == [], dotted


def test_run_documents_every_parameter_of_its_signature() -> None:
    documented = section(own_doc(QueueManager.run), "Args") or []
    for parameter in inspect.signature(QueueManager.run).parameters:
        if parameter != "self":
            assert parameter in documented, f"run() does not document {parameter}"
