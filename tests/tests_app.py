"""An application for ``pgq-sync run`` in tests: ``pgq-sync run tests_app:make``.

Configured by the environment: ``PGQUEUE_DSN`` and ``PGQUEUE_SCHEMA`` (the queue), and
``TESTS_APP_JOB_SECONDS`` (how long each job takes). Entrypoints ``alpha`` and ``beta``
record each start in a ledger table of the queue's schema (job id, entrypoint, pid, the
database's clock), so a test reads what ran where and when from the handlers themselves;
``fails`` always raises.
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any

import anyio
import psycopg
from psycopg import sql

from pgqueue_sync import Job, PsycopgDriver, QueueManager, Settings
from pgqueue_sync_aio import AsyncQueueManager

LEDGER = """
CREATE TABLE IF NOT EXISTS {ledger} (
    job_id     bigint NOT NULL,
    entrypoint text NOT NULL,
    pid        integer NOT NULL,
    started    timestamptz NOT NULL DEFAULT clock_timestamp()
)
"""


def ledger_table(settings: Settings) -> sql.Identifier:
    return sql.Identifier(settings.schema, "tests_app_ledger")


class Ledger:
    """One connection per handler thread, each start a row."""

    def __init__(self, dsn: str, settings: Settings) -> None:
        self.dsn = dsn
        self.table = ledger_table(settings)
        self.local = threading.local()

    def record(self, job: Job) -> None:
        conn: psycopg.Connection[Any] | None = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = psycopg.connect(self.dsn, autocommit=True)
        conn.execute(
            sql.SQL("INSERT INTO {} (job_id, entrypoint, pid) VALUES (%s, %s, %s)").format(
                self.table
            ),
            (job.id, job.entrypoint, os.getpid()),
        )


def make() -> QueueManager:
    dsn = os.environ["PGQUEUE_DSN"]
    settings = Settings.from_env()
    seconds = float(os.environ.get("TESTS_APP_JOB_SECONDS", "0.02"))
    ledger = Ledger(dsn, settings)
    qm = QueueManager(PsycopgDriver(dsn), settings=settings)

    def handler(job: Job) -> None:
        ledger.record(job)
        time.sleep(seconds)

    for name in ("alpha", "beta"):
        qm.entrypoint(name)(handler)

    @qm.entrypoint("fails")
    def fails(job: Job) -> None:
        raise ValueError(f"job {job.id} fails on purpose")

    return qm


def make_async() -> AsyncQueueManager:
    """The same entrypoints as ``make``, on an AsyncQueueManager, ``alpha`` async."""
    dsn = os.environ["PGQUEUE_DSN"]
    settings = Settings.from_env()
    ledger = Ledger(dsn, settings)
    qm = AsyncQueueManager(PsycopgDriver(dsn), settings=settings)

    @qm.entrypoint("alpha")
    async def alpha(job: Job) -> None:
        ledger.record(job)
        await anyio.sleep(0)

    @qm.entrypoint("beta")
    def beta(job: Job) -> None:
        ledger.record(job)

    return qm
