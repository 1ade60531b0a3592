"""A task's arguments: checked against its signature and encoded as JSON at enqueue, decoded
and delivered to the function when the job runs (no database here).

The payload of a task's job is a UTF-8 JSON object, ``{"args": [...], "kwargs": {...}}``:
a producer in another language can enqueue a task by writing one. JSON carries ``None``,
``bool``, ``int``, finite ``float``, ``str``, lists (a tuple arrives as a list) and dicts with
``str`` keys; anything else is refused when the job is enqueued, never when it runs.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math
import re
import typing
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from .context import Context
from .errors import InvalidHandlerError, InvalidTaskArgumentsError, PayloadTooLargeError

__all__ = ["ENQUEUE_OPTIONS", "TaskSignature", "decode_arguments", "describe"]

# The keyword-only options of ``Task.enqueue``: a task argument cannot go by these names
# through ``enqueue`` (``enqueue_with`` takes the arguments as a tuple and a dict instead).
ENQUEUE_OPTIONS = frozenset(
    {"priority", "execute_after", "dedupe_key", "on_conflict", "headers", "connection"}
)

# JSON carries these types exactly (subclasses such as enums or bool-as-int do not round-trip).
_SCALARS = (str, int, bool, type(None))
_KEYWORD_KINDS = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
# A Context annotation left as text (``from __future__ import annotations`` in a scope whose
# names cannot be resolved): ``Context``, ``pgqueue_sync.Context``, ``Context | None``.
_CONTEXT_TEXT = re.compile(
    r"^\s*(?:Optional\[)?\s*(?:[\w.]+\.)?Context\s*(?:\]|\|\s*None)?\s*$|^\s*None\s*\|\s*"
    r"(?:[\w.]+\.)?Context\s*$"
)


class _Text(str):
    """An annotation kept as text, shown without quotes in a signature."""

    def __repr__(self) -> str:
        return str(self)


def describe(signature: inspect.Signature) -> str:
    """``signature`` as it was written: ``(to: str, *, urgent: bool = False)``."""
    return str(
        signature.replace(
            parameters=[
                p.replace(annotation=_Text(p.annotation)) if isinstance(p.annotation, str) else p
                for p in signature.parameters.values()
            ],
            return_annotation=inspect.Signature.empty,
        )
    )


def _is_context(annotation: object) -> bool:
    if annotation is Context:
        return True
    if isinstance(annotation, str):
        return bool(_CONTEXT_TEXT.match(annotation))
    return Context in typing.get_args(annotation)


def _context_parameter(func: Callable[..., Any], signature: inspect.Signature) -> str | None:
    """The parameter annotated ``Context`` (or ``Context | None``), if any."""
    try:
        hints = typing.get_type_hints(func)
    except Exception:  # names the annotations use are not resolvable from here
        hints = {}
    found = [
        p.name
        for p in signature.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        and _is_context(hints.get(p.name, p.annotation))
    ]
    if len(found) > 1:
        raise InvalidHandlerError(
            f"{getattr(func, '__qualname__', func)!r} has {len(found)} parameters annotated "
            f"Context ({', '.join(found)}): a task takes its job's Context once, at most"
        )
    return found[0] if found else None


@dataclasses.dataclass(frozen=True)
class TaskSignature:
    """What a task function takes: its arguments (checked at enqueue) and, if it has one,
    the parameter that receives the job's :class:`~pgqueue_sync.Context` (not an argument:
    the worker fills it in)."""

    name: str
    full: inspect.Signature
    arguments: inspect.Signature
    context: str | None
    collisions: frozenset[str]

    @classmethod
    def of(cls, name: str, func: Callable[..., Any]) -> TaskSignature:
        """The signature of task ``name``'s function ``func`` (InvalidHandlerError when it
        has none to check, or more than one Context parameter)."""
        try:
            full = inspect.signature(func)
        except (TypeError, ValueError):
            raise InvalidHandlerError(
                f"task {name!r}: {func!r} has no signature to check arguments against"
            ) from None
        context = _context_parameter(func, full)
        params = [p for p in full.parameters.values() if p.name != context]
        return cls(
            name=name,
            full=full,
            arguments=full.replace(parameters=params),
            context=context,
            collisions=frozenset(
                p.name for p in params if p.kind in _KEYWORD_KINDS and p.name in ENQUEUE_OPTIONS
            ),
        )

    def encode(self, args: Sequence[Any], kwargs: Mapping[str, Any], limit: int) -> bytes:
        """The payload of a job calling the task with these arguments (see the module
        docstring); InvalidTaskArgumentsError when they do not fit the signature or JSON,
        PayloadTooLargeError past ``limit`` bytes."""
        if not isinstance(kwargs, Mapping):
            raise InvalidTaskArgumentsError(
                f"task {self.name!r}: kwargs must be a mapping, not {type(kwargs).__name__}"
            )
        args, kwargs = list(args), dict(kwargs)
        try:
            bound = self.arguments.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidTaskArgumentsError(
                f"task {self.name!r} cannot take these arguments: {exc} (it takes "
                f"{describe(self.arguments)})"
            ) from None
        for parameter, value in bound.arguments.items():
            problem = _json_problem(value, f"argument {parameter!r}")
            if problem is not None:
                raise InvalidTaskArgumentsError(
                    f"task {self.name!r}: {problem}. JSON carries None, bool, int, finite "
                    "float, str, lists and dicts with str keys (pass bytes as base64 text or "
                    "use an entrypoint with a bytes payload; a datetime as isoformat(); an "
                    "enum as its .value)"
                )
        document = {"args": args, "kwargs": kwargs}
        try:
            text = json.dumps(document, ensure_ascii=False, allow_nan=False, separators=(",", ":"))
            blob = text.encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: JSON's \u escape carries it
            blob = json.dumps(document, allow_nan=False, separators=(",", ":")).encode("ascii")
        except RecursionError:
            raise InvalidTaskArgumentsError(
                f"task {self.name!r}: the arguments are nested too deeply for JSON"
            ) from None
        if len(blob) > limit:
            raise PayloadTooLargeError(
                f"the arguments of task {self.name!r} are {len(blob)} bytes of JSON, over the "
                f"limit of {limit} bytes (Settings.max_payload_bytes): store large data "
                "elsewhere and pass a reference to it"
            )
        return blob

    def call_arguments(
        self, args: Sequence[Any], kwargs: Mapping[str, Any], context: Context | None
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        """How to call the function with a job's arguments (and its Context, if the function
        takes it); TypeError when they no longer fit its signature (the code changed since
        the job was enqueued)."""
        if self.context is None:
            bound = self.arguments.bind(*args, **kwargs)
            return bound.args, bound.kwargs
        given = self.arguments.bind(*args, **kwargs).arguments
        call = self.full.bind_partial()
        call.arguments = {
            name: context if name == self.context else given[name]
            for name in self.full.parameters
            if name == self.context or name in given
        }
        return call.args, call.kwargs


def decode_arguments(name: str, payload: bytes | None) -> tuple[list[Any], dict[str, Any]]:
    """The positional and keyword arguments in a task's payload (InvalidTaskArgumentsError
    when it is not one: a job enqueued by hand with another payload)."""
    try:
        document = json.loads(payload if payload is not None else b"{}")
    except (UnicodeDecodeError, ValueError):
        document = None
    if isinstance(document, dict) and not (document.keys() - {"args", "kwargs"}):
        args = document.get("args", [])
        kwargs = document.get("kwargs", {})
        if isinstance(args, list) and isinstance(kwargs, dict):
            return args, kwargs
    raise InvalidTaskArgumentsError(
        f"the payload of this job of task {name!r} is not a task's arguments "
        '(a JSON object {"args": [...], "kwargs": {...}})'
    )


def _json_problem(value: object, where: str) -> str | None:
    """Why JSON cannot carry ``value`` as it is, if it cannot (``where`` names it)."""
    stack: list[tuple[object, str, tuple[int, ...]]] = [(value, where, ())]
    while stack:
        item, path, parents = stack.pop()
        kind = type(item)
        if kind in _SCALARS:
            continue
        if kind is float:
            if not math.isfinite(item):  # type: ignore[arg-type]
                return f"{path} is {item!r}, which JSON cannot carry (use None or a str)"
            continue
        if kind in (list, tuple, dict):
            if id(item) in parents:
                return f"{path} holds itself (a cycle)"
            inside = (*parents, id(item))
            if kind is dict:
                for key, member in item.items():  # type: ignore[attr-defined]
                    if type(key) is not str:
                        return (
                            f"{path} has a key {key!r} of type {type(key).__name__}: JSON "
                            "keys are str"
                        )
                    stack.append((member, f"{path}[{key!r}]", inside))
            else:
                for index, member in enumerate(item):  # type: ignore[arg-type]
                    stack.append((member, f"{path}[{index}]", inside))
            continue
        return f"{path} is a {kind.__qualname__}, which JSON cannot carry"
    return None
