"""The library stays silent unless the application configures logging."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

SCRIPT = textwrap.dedent(
    """
    import logging, os, sys
    import psycopg
    from pgqueue_sync import Job, PsycopgDriver, QueueManager, Settings

    if sys.argv[1] == "configured":
        logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    conn = psycopg.connect(os.environ["DSN"], autocommit=True)
    qm = QueueManager(PsycopgDriver(conn), settings=Settings(schema=os.environ["SCHEMA"]))
    qm.queries.install()

    @qm.entrypoint("boom")
    def boom(job: Job) -> None:
        raise ValueError("it broke")

    qm.queries.enqueue("boom", None)
    qm.run(mode="drain", dequeue_timeout=0.5)
    """
)


@pytest.mark.parametrize("logging_", ["silent", "configured"])
def test_a_failed_job_is_logged_only_where_the_application_asked(
    dsn: str, schema: str, logging_: str
) -> None:
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, logging_],
        env={**os.environ, "DSN": dsn, "SCHEMA": schema},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    if logging_ == "silent":
        # Without the library's NullHandler, Python's last resort printed the warning.
        assert proc.stderr == ""
    else:
        assert "pgqueue_sync.engine.execution: job 1 (boom) raised ValueError: it broke" in (
            proc.stderr
        )
