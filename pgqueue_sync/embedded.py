"""An embedded PostgreSQL (the ``pgserver`` package) for the demo and the tests.

Used only when no DSN is given: ``pip install 'pgqueue-sync[embedded]'`` brings the server
binaries in a wheel; a throwaway cluster starts in a temporary directory in about a second.
"""

from __future__ import annotations

import contextlib
import shutil
import tempfile
import warnings
from collections.abc import Iterator
from typing import Any

from .errors import ConfigurationError

__all__ = ["embedded_postgres"]


def _import_pgserver() -> Any:
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI): harmless here.
        warnings.simplefilter("ignore")
        try:
            import pgserver  # noqa: PLC0415 - optional dependency
        except ImportError as exc:
            raise ConfigurationError(
                "no DSN was given and the embedded PostgreSQL is not installed: pass --dsn "
                "(or set PGQUEUE_DSN), or `pip install 'pgqueue-sync[embedded]'`"
            ) from exc
    return pgserver


@contextlib.contextmanager
def embedded_postgres() -> Iterator[str]:
    """Start a private PostgreSQL in a temporary directory; yield its URI; stop and delete it."""
    pgserver = _import_pgserver()
    datadir = tempfile.mkdtemp(prefix="pgqueue-sync-pg-")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = pgserver.get_server(datadir, cleanup_mode="delete")
        try:
            yield str(server.get_uri())
        finally:
            server.cleanup()
    finally:
        shutil.rmtree(datadir, ignore_errors=True)
