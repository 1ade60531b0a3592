"""Find the application a worker runs: ``module:attribute`` or ``path/to/file.py:attribute``.

The attribute is a QueueManager, an AsyncQueueManager, or a callable that takes no argument
and returns one (an application factory). As gunicorn and Flask do, the current directory
is importable, and a file's own directory too.

Two kinds of failure, which a supervisor tells apart from a worker that crashed while
running: :class:`AppNotFound` (the APP argument names nothing usable: a usage error, exit
code 2) and :class:`AppFailed` (the application's own code raised while it was imported or
built: exit code 1, with its traceback).
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import os
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias, cast

from pgqueue_sync.qm import QueueManager

from .context import CliError, CliRefusal

if TYPE_CHECKING:
    from pgqueue_sync_aio import AsyncQueueManager

__all__ = ["AnyManager", "AppFailed", "AppNotFound", "load_app", "sync_manager"]

AnyManager: TypeAlias = "QueueManager | AsyncQueueManager"


class AppNotFound(CliRefusal):
    """The APP argument does not name a queue manager (exit code 2)."""


class AppFailed(CliError):
    """The application raised while it was imported or built (exit code 1)."""


def _managers() -> tuple[type, ...]:
    from pgqueue_sync_aio import AsyncQueueManager  # noqa: PLC0415 - imports anyio

    return (QueueManager, AsyncQueueManager)


def sync_manager(manager: AnyManager) -> QueueManager:
    """The QueueManager that runs the engine (an AsyncQueueManager's ``sync``)."""
    return manager if isinstance(manager, QueueManager) else manager.sync


def _failed(what: str, exc: BaseException) -> AppFailed:
    text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
    return AppFailed(f"{what} raised {type(exc).__name__}: {exc}\n{text.rstrip()}")


def _import_file(path: Path) -> Any:
    if not path.is_file():
        raise AppNotFound(f"APP: no such file {str(path)!r}")
    name = path.stem
    directory = str(path.resolve().parent)
    if directory not in sys.path:
        sys.path.insert(0, directory)
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise AppNotFound(f"APP: cannot import {str(path)!r} as Python")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:
        raise _failed(f"importing {path}", exc) from None
    return module


def _import_module(name: str) -> Any:
    if "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name is not None and (name == exc.name or name.startswith(exc.name + ".")):
            raise AppNotFound(
                f"APP: no module named {exc.name!r} (run from the directory that holds it, or "
                "set PYTHONPATH)"
            ) from None
        raise _failed(f"importing {name}", exc) from None
    except Exception as exc:
        raise _failed(f"importing {name}", exc) from None


def load_app(spec: str) -> AnyManager:
    """The queue manager ``spec`` names (see the module docstring)."""
    where, sep, attribute = spec.rpartition(":")
    if not sep or not where or not attribute:
        raise AppNotFound(
            f"APP must be module:attribute or path/to/file.py:attribute, not {spec!r}"
        )
    if where.endswith(".py") or os.sep in where:
        module = _import_file(Path(where))
    else:
        module = _import_module(where)
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise AppNotFound(f"APP: {where!r} has no attribute {attribute!r}") from None
    managers = _managers()
    if not isinstance(target, managers) and callable(target):
        try:
            inspect.signature(target).bind()
        except TypeError as exc:
            raise AppNotFound(
                f"APP: {attribute} must be a queue manager, or a callable that takes no "
                f"argument and returns one ({exc})"
            ) from None
        except ValueError:
            pass  # no signature to check: call it
        try:
            target = target()
        except Exception as exc:
            raise _failed(f"calling {attribute}()", exc) from None
    if not isinstance(target, managers):
        raise AppNotFound(
            f"APP: {spec} is a {type(target).__name__}, not a QueueManager or "
            "AsyncQueueManager (or a callable returning one)"
        )
    manager = cast("AnyManager", target)
    if not sync_manager(manager).entrypoints:
        raise AppNotFound(f"APP: {spec} has no entrypoint registered: it has nothing to run")
    return manager
