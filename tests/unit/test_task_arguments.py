"""A task's arguments, checked and encoded at enqueue (no database)."""

from __future__ import annotations

import enum
import json
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any

import pytest

from pgqueue_sync import (
    Context,
    InvalidHandlerError,
    InvalidPayloadError,
    InvalidTaskArgumentsError,
    PayloadTooLargeError,
)
from pgqueue_sync.task_arguments import TaskSignature, decode_arguments, describe

LIMIT = 1 << 20


def send_email(to: str, subject: str, *, urgent: bool = False) -> str:
    return f"{to}:{subject}:{urgent}"


def signature(func: Any) -> TaskSignature:
    return TaskSignature.of(func.__name__, func)


def round_trip(sig: TaskSignature, *args: Any, **kwargs: Any) -> tuple[Any, ...]:
    payload = sig.encode(args, kwargs, LIMIT)
    decoded_args, decoded_kwargs = decode_arguments(sig.name, payload)
    return sig.call_arguments(decoded_args, decoded_kwargs, None)


def test_arguments_travel_as_json_and_come_back_as_given() -> None:
    sig = signature(send_email)
    payload = sig.encode(("a@b.c", "hi"), {"urgent": True}, LIMIT)
    assert json.loads(payload) == {"args": ["a@b.c", "hi"], "kwargs": {"urgent": True}}
    assert round_trip(sig, "a@b.c", "hi", urgent=True) == (("a@b.c", "hi"), {"urgent": True})


def test_values_json_carries_round_trip_exactly() -> None:
    def f(*values: Any, **named: Any) -> None: ...

    values = (None, True, 0, -(2**70), 1.5, "é\x00\U0001f600", [1, [2]], {"k": {"n": None}})
    args, kwargs = round_trip(signature(f), *values, lone="\udcff")
    assert args == values
    assert kwargs == {"lone": "\udcff"}  # a lone surrogate travels as a JSON escape


def test_a_tuple_arrives_as_a_list() -> None:
    def f(pair: Any) -> None: ...

    assert round_trip(signature(f), (1, 2)) == (([1, 2],), {})


class Colour(enum.Enum):
    RED = "red"


class Level(enum.IntEnum):
    HIGH = 1


@pytest.mark.parametrize(
    ("value", "named"),
    [
        (b"raw", "bytes"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (datetime(2024, 1, 1, tzinfo=timezone.utc), "datetime"),
        (Decimal("1.5"), "Decimal"),
        ({1, 2}, "set"),
        (Colour.RED, "Colour"),
        (Level.HIGH, "Level"),
        ({1: "int key"}, "key 1"),
        ([object()], "object"),
        ({"deep": [{"x": b"nested"}]}, "argument 'value'['deep'][0]['x'] is a bytes"),
    ],
)
def test_what_json_cannot_carry_is_refused_at_encoding(value: object, named: str) -> None:
    def f(value: Any) -> None: ...

    with pytest.raises(InvalidTaskArgumentsError, match="JSON") as info:
        signature(f).encode((value,), {}, LIMIT)
    assert named in str(info.value)
    assert isinstance(info.value, InvalidPayloadError)
    assert isinstance(info.value, TypeError)


def test_a_cycle_is_refused() -> None:
    def f(value: Any) -> None: ...

    loop: list[Any] = []
    loop.append(loop)
    with pytest.raises(InvalidTaskArgumentsError, match="cycle"):
        signature(f).encode((loop,), {}, LIMIT)
    shared = [1]
    signature(f).encode(([shared, shared],), {}, LIMIT)  # the same list twice is no cycle


@pytest.mark.parametrize(
    ("args", "kwargs", "message"),
    [
        (("a@b.c",), {}, "missing a required argument: 'subject'"),
        (("a", "b", "c"), {}, "too many positional arguments"),
        (("a", "b"), {"nope": 1}, "unexpected keyword argument 'nope'"),
        (("a",), {"to": "b", "subject": "c"}, "multiple values for argument 'to'"),
    ],
)
def test_arguments_that_do_not_fit_the_signature_are_refused(
    args: tuple[Any, ...], kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(InvalidTaskArgumentsError, match=message) as info:
        signature(send_email).encode(args, kwargs, LIMIT)
    assert "(to: str, subject: str, *, urgent: bool = False)" in str(info.value)


def test_arguments_over_the_payload_limit_are_refused() -> None:
    with pytest.raises(PayloadTooLargeError, match="arguments of task 'send_email'"):
        signature(send_email).encode(("x" * 100, "y"), {}, 64)


def test_a_parameter_annotated_context_is_filled_by_the_worker_not_the_caller() -> None:
    def with_ctx(n: int, ctx: Context, *, scale: int = 1) -> int:
        return n * scale

    sig = signature(with_ctx)
    assert sig.context == "ctx"
    assert describe(sig.arguments) == "(n: int, *, scale: int = 1)"
    with pytest.raises(InvalidTaskArgumentsError, match="unexpected keyword argument 'ctx'"):
        sig.encode((1,), {"ctx": None}, LIMIT)
    payload = sig.encode((3,), {"scale": 2}, LIMIT)
    args, kwargs = decode_arguments(sig.name, payload)
    marker: Any = object()
    assert sig.call_arguments(args, kwargs, marker) == ((3, marker), {"scale": 2})


def test_context_is_found_whichever_way_it_is_annotated() -> None:
    def optional(x: int, ctx: Context | None = None) -> None: ...

    def first(ctx: Context, /, x: int) -> None: ...

    def text(x: int, ctx: "Context") -> None: ...  # noqa: UP037 - a string annotation

    for func in (optional, first, text):
        assert signature(func).context == "ctx", func
    marker: Any = object()
    assert signature(first).call_arguments([5], {}, marker) == ((marker, 5), {})

    def two(a: Context, b: Context) -> None: ...

    with pytest.raises(InvalidHandlerError, match="2 parameters annotated Context"):
        signature(two)


def test_a_payload_that_is_not_a_tasks_arguments_is_refused_when_it_runs() -> None:
    for payload in (b"raw bytes", b"[1, 2]", b'{"args": 1}', b'{"argz": []}', b"\xff"):
        with pytest.raises(InvalidTaskArgumentsError, match="not a task's arguments"):
            decode_arguments("t", payload)
    assert decode_arguments("t", None) == ([], {})
