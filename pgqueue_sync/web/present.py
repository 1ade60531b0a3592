"""How the dashboard shows values: times, durations, counts, and bytes (a payload, a result)
previewed safely as text or hex, truncated.

Pure functions, no Flask: the templates call them as filters. Escaping is the templates'
(Jinja's autoescape): nothing here returns markup.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Mapping
from datetime import datetime, timezone
from typing import Any

__all__ = [
    "PREVIEW_BYTES",
    "BytesPreview",
    "ago",
    "count",
    "pretty_json",
    "preview",
    "seconds",
    "short_id",
    "when",
]

# How much of a payload or result the job page shows.
PREVIEW_BYTES = 4096
_ROW = 16
# Characters a text preview may hold besides printable ones.
_TEXT_CONTROLS = frozenset("\t\n\r")


@dataclasses.dataclass(frozen=True)
class BytesPreview:
    """The first ``shown`` of ``size`` bytes: as ``text`` when they are UTF-8 without control
    characters (``json`` too, indented, when the whole value is JSON), and always as hex
    rows (offset, hex bytes, printable ASCII)."""

    size: int
    shown: int
    text: str | None
    json: str | None
    hex_rows: list[tuple[str, str, str]]

    @property
    def truncated(self) -> bool:
        return self.shown < self.size


def _utf8_prefix(data: bytes) -> str | None:
    """``data`` decoded as UTF-8, allowing it to end inside a character (a cut preview)."""
    for cut in range(4):
        end = len(data) - cut
        if end < 0:
            break
        try:
            return data[:end].decode("utf-8")
        except UnicodeDecodeError:
            continue
    return None


def _textual(text: str) -> bool:
    return all(ch.isprintable() or ch in _TEXT_CONTROLS for ch in text)


def _hex_rows(data: bytes) -> list[tuple[str, str, str]]:
    rows = []
    for offset in range(0, len(data), _ROW):
        chunk = data[offset : offset + _ROW]
        rows.append(
            (
                f"{offset:08x}",
                " ".join(f"{b:02x}" for b in chunk),
                "".join(chr(b) if 0x20 <= b < 0x7F else "." for b in chunk),
            )
        )
    return rows


def preview(data: bytes | None, limit: int = PREVIEW_BYTES) -> BytesPreview | None:
    """A preview of ``data`` (None for None): at most ``limit`` bytes."""
    if data is None:
        return None
    head = bytes(data[:limit])
    text = _utf8_prefix(head)
    if text is not None and not _textual(text):
        text = None
    as_json = None
    if text is not None and len(head) == len(data) and text.strip():
        try:
            as_json = pretty_json(json.loads(text))
        except ValueError:
            as_json = None
    return BytesPreview(len(data), len(head), text, as_json, _hex_rows(head))


def pretty_json(value: Any) -> str:
    """``value`` as indented JSON, keys sorted, non-ASCII kept (for headers, results)."""
    return json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False, default=str)


def when(value: datetime | None) -> str:
    """A time in UTC, to the second: ``2026-11-29 23:50:01``; ``-`` for None."""
    if value is None:
        return "-"
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    """A duration for people: ``85 ms``, ``3.4 s``, ``2 min 5 s``, ``3 h 4 min``."""
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(int(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    return f"{hours // 24} d {hours % 24} h"


def ago(value: datetime | None, now: datetime | None = None) -> str:
    """How long ago ``value`` was: ``12 s ago`` (``in 5 min`` for a future time)."""
    if value is None:
        return "-"
    now = now if now is not None else datetime.now(timezone.utc)
    delta = (now - value).total_seconds()
    if delta < 0:
        return f"in {seconds(-delta)}"
    return f"{seconds(delta)} ago"


def count(value: int | None) -> str:
    """A count with thousands separators: ``1,000,000``."""
    return "-" if value is None else f"{value:,}"


def short_id(value: uuid.UUID | str | None) -> str:
    """The first 8 characters of a worker id (the page shows the whole one on hover)."""
    return "-" if value is None else str(value)[:8]


def headers_json(headers: Mapping[str, Any] | None) -> str | None:
    """A job's headers as indented JSON (None when it has none)."""
    return None if headers is None else pretty_json(dict(headers))
