"""Fixtures of the tests that run tests/tests_app.py in worker processes."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from psycopg import sql

from pgqueue_sync import PsycopgDriver, Queries, Settings
from tests.tests_app import LEDGER, ledger_table


@pytest.fixture
def queries(dsn: str, schema: str) -> Iterator[Queries]:
    """The queue of tests_app in the test's schema, with its ledger table."""
    settings = Settings(schema=schema)
    with psycopg.connect(dsn, autocommit=True) as conn:
        q = Queries(PsycopgDriver(conn), settings)
        q.install()
        conn.execute(sql.SQL(LEDGER).format(ledger=ledger_table(settings)))
        yield q
