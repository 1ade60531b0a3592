"""The pause and resume events: one encode, one decode; what a forger sends is never trusted
beyond its shape."""

from __future__ import annotations

import json

import pytest

from pgqueue_sync import events


@pytest.mark.parametrize(
    "event",
    [
        events.Pause(("emails", "reports")),
        events.Resume(("emails",)),
        events.Pause(None),
        events.Resume(None),
    ],
)
def test_pause_and_resume_round_trip(event: events.Event) -> None:
    assert events.decode(events.encode(event)) == event


def test_the_database_and_the_decoder_agree_on_the_type_names() -> None:
    assert events.SQL_LITERALS["pause_type"] == "pause"
    assert events.SQL_LITERALS["resume_type"] == "resume"
    payload = json.dumps({"type": "pause", "entrypoints": ["a"]})
    assert events.decode(payload) == events.Pause(("a",))


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        ({"type": "pause", "entrypoints": ["a", 1, None]}, events.Pause(("a",))),
        ({"type": "pause", "entrypoints": "a"}, events.Pause(None)),
        ({"type": "resume"}, events.Resume(None)),
        ({"type": "resume", "entrypoints": {"a": 1}}, events.Resume(None)),
    ],
)
def test_malformed_fields_are_dropped(body: dict[str, object], expected: events.Event) -> None:
    assert events.decode(json.dumps(body)) == expected
