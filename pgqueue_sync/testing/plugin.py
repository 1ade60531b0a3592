"""The pytest plugin of pgqueue-sync (registered as the ``pgqueue_sync`` pytest11 entry
point): fixtures for testing an application's jobs against a real PostgreSQL.

- ``pgqueue_dsn`` (session): the test database, from ``--pgqueue-dsn``, else the
  ``pgqueue_dsn`` ini option, else ``$PGQUEUE_TEST_DSN``; a test that uses the fixtures
  without one fails and says so.
- ``pgqueue``: a ``TemporaryQueue`` in a fresh schema of that
  database, installed for the test and dropped after it.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from pgqueue_sync.errors import PgQueueError

from .queue import TemporaryQueue

__all__ = ["pgqueue", "pgqueue_dsn", "pytest_addoption"]

DSN_ENV = "PGQUEUE_TEST_DSN"


def pytest_addoption(parser: pytest.Parser) -> None:
    """``--pgqueue-dsn`` and the ``pgqueue_dsn`` ini option."""
    help_text = (
        "PostgreSQL conninfo or URI of the database where the pgqueue fixture makes its "
        f"schemas (default: the pgqueue_dsn ini option, else ${DSN_ENV})"
    )
    parser.getgroup("pgqueue-sync").addoption(
        "--pgqueue-dsn", dest="pgqueue_dsn", default=None, help=help_text
    )
    parser.addini("pgqueue_dsn", help_text, default="")


@pytest.fixture(scope="session")
def pgqueue_dsn(pytestconfig: pytest.Config) -> str:
    """The test database's conninfo (``--pgqueue-dsn``, ini ``pgqueue_dsn``,
    ``$PGQUEUE_TEST_DSN``)."""
    dsn = (
        pytestconfig.getoption("pgqueue_dsn")
        or pytestconfig.getini("pgqueue_dsn")
        or os.environ.get(DSN_ENV)
    )
    if not dsn:
        pytest.fail(
            "the pgqueue fixture needs a test database: pass --pgqueue-dsn, set pgqueue_dsn "
            f"in the pytest ini file, or set ${DSN_ENV}",
            pytrace=False,
        )
    return str(dsn)


@pytest.fixture
def pgqueue(pgqueue_dsn: str) -> Iterator[TemporaryQueue]:
    """A queue in a fresh schema of the test database, dropped after the test."""
    try:
        queue = TemporaryQueue(pgqueue_dsn)
    except PgQueueError as exc:
        # The message, without a traceback whose frames would show the conninfo.
        pytest.fail(f"pgqueue: {type(exc).__name__}: {exc}", pytrace=False)
    try:
        yield queue
    finally:
        queue.close()
