"""The ``pgq-sync`` command.

This module is the console script's entry point and imports nothing beyond the standard
library: the commands need the ``cli`` extra (click), and without it ``pgq-sync`` says how
to install it instead of failing with a traceback. The commands live in
:mod:`pgqueue_sync.cli.app` (the click group, reusable by other command-line front ends).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

__all__ = ["main"]

MISSING_EXTRA = 'pgq-sync needs the "cli" extra: pip install "pgqueue-sync[cli]"'


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``pgq-sync`` with ``argv`` (default: the process's arguments); return the exit
    code: 0 ok, 1 failure, 2 usage error, 130 interrupted."""
    try:
        from .app import run  # noqa: PLC0415 - click is an optional dependency
    except ModuleNotFoundError as exc:
        if exc.name != "click":
            raise
        print(MISSING_EXTRA, file=sys.stderr)
        return 1
    return run(argv)
