"""Logging as the command line configures it: text for people, JSON lines for collectors.

The library logs to ``pgqueue_sync`` (the engine, queries, a failed job with its id) and the
command line to ``pgqueue_sync.cli`` (the supervisor of ``pgq-sync run --processes``). A
command configures the root logger once, on stderr, so the application's own loggers in a
worker (its handlers') print the same way.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from typing import Literal, TextIO

__all__ = ["LEVELS", "JsonFormatter", "LogFormat", "configure_logging", "restored_logging"]

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
LogFormat = Literal["text", "json"]

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(process)d]: %(message)s"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, ISO 8601), level, logger, message, host, pid,
    thread, and the traceback of an exception if there is one."""

    def __init__(self) -> None:
        super().__init__()
        self.host = socket.gethostname()

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, timezone.utc).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "host": self.host,
            "pid": record.process,
            "thread": record.threadName,
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class _CliHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """The handler a command installs (a later command of the same process replaces it).
    It writes to whatever ``sys.stderr`` is when a record comes (tests capture it)."""

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: object) -> None:
        pass


@contextlib.contextmanager
def restored_logging() -> Iterator[None]:
    """Undo, on the way out, what :func:`configure_logging` did to the root logger (a
    command run inside another program leaves its logging as it was)."""
    root = logging.getLogger()
    level = root.level
    try:
        yield
    finally:
        for handler in [h for h in root.handlers if isinstance(h, _CliHandler)]:
            root.removeHandler(handler)
        root.setLevel(level)


def configure_logging(level: str = "WARNING", fmt: LogFormat = "text") -> None:
    """Log to stderr at ``level`` and above, as text or JSON lines. Handlers that others
    installed on the root logger are left alone."""
    handler = _CliHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _CliHandler)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
