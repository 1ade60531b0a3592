"""How the dashboard previews bytes and shows durations (no database)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from pgqueue_sync.web import present


def test_text_json_and_binary_previews() -> None:
    assert present.preview(None) is None
    text = present.preview("héllo wörld\n".encode())
    assert text is not None
    assert (text.size, text.shown, text.text, text.json, text.truncated) == (
        14,
        14,
        "héllo wörld\n",
        None,
        False,
    )
    data = present.preview(b'{"b": 1, "a": [true]}')
    assert data is not None
    assert data.json == '{\n  "a": [\n    true\n  ],\n  "b": 1\n}'
    binary = present.preview(b"\x00\x01AB\x7f\xff")
    assert binary is not None
    assert binary.text is None
    assert binary.hex_rows == [("00000000", "00 01 41 42 7f ff", "..AB..")]
    # Control characters other than tab and newlines make it binary (an escape sequence
    # would otherwise reach the page as text).
    escape = present.preview(b"red \x1b[31m")
    assert escape is not None
    assert escape.text is None


def test_a_cut_preview_keeps_its_text_and_is_not_json() -> None:
    value = ("é" * 3000).encode()  # 6000 bytes
    cut = present.preview(value, limit=4097)  # the cut falls inside a character
    assert cut is not None
    assert cut.truncated
    assert cut.text == "é" * 2048
    assert cut.json is None
    assert len(cut.hex_rows) == 257  # 16 bytes a row
    long_json = present.preview(b'["a", ' + b'"x", ' * 2000 + b'"z"]', limit=100)
    assert long_json is not None
    assert long_json.text is not None
    assert long_json.json is None


def test_durations_times_and_counts() -> None:
    assert present.seconds(None) == "-"
    assert present.seconds(0.0421) == "42 ms"
    assert present.seconds(3.44) == "3.4 s"
    assert present.seconds(125) == "2 min 5 s"
    assert present.seconds(3 * 3600 + 240) == "3 h 4 min"
    assert present.seconds(50 * 3600) == "2 d 2 h"
    now = datetime(2030, 1, 1, 12, 0, tzinfo=timezone.utc)
    assert present.ago(now - timedelta(seconds=12), now) == "12.0 s ago"
    assert present.ago(now + timedelta(minutes=5), now) == "in 5 min 0 s"
    assert present.when(now) == "2030-01-01 12:00:00"
    assert present.when(None) == "-"
    assert present.count(1_000_000) == "1,000,000"
    assert present.short_id("d64ab735-1111-2222-3333-444455556666") == "d64ab735"
