"""Helpers for testing an application that uses pgqueue-sync.

- A pytest plugin (``pgqueue_sync.testing.plugin``, registered with pytest when the
  package is installed): the ``pgqueue`` fixture, a ``TemporaryQueue`` in a fresh
  schema of your test database (``--pgqueue-dsn``, the ``pgqueue_dsn`` ini option, or
  ``PGQUEUE_TEST_DSN``), dropped after the test.
- ``drain``: run every due job now, in the test's thread, through the real engine, and
  get how each ended (``JobOutcome``); exceptions re-raised on request.
- ``eager``: for unit tests without PostgreSQL, ``enqueue`` runs the handler inline.
  Not the real thing: no transaction, no retry, no concurrency (see its docstring).
"""

from .draining import DrainLimitError, drain
from .eager import EagerQueries, EagerQueue, eager
from .outcomes import JobOutcome
from .queue import TemporaryQueue

__all__ = [
    "DrainLimitError",
    "EagerQueries",
    "EagerQueue",
    "JobOutcome",
    "TemporaryQueue",
    "drain",
    "eager",
]
