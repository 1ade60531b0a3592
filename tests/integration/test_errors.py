from __future__ import annotations

import time
from collections.abc import Callable

import psycopg
import pytest

from pgqueue_sync import (
    ConfigurationError,
    ConnectError,
    Job,
    PgQueueError,
    PsycopgDriver,
    QueueManager,
    SchemaNotInstalledError,
    Settings,
)


def test_unreachable_server_fails_fast_with_the_password_redacted() -> None:
    # Port 9 on localhost: nothing listens there, the connection is refused at once.
    driver = PsycopgDriver(
        "host=127.0.0.1 port=9 user=app password=hunter2 dbname=x", connect_timeout=2
    )
    qm = QueueManager(driver, settings=Settings(schema="nowhere"))
    started = time.monotonic()
    with pytest.raises(ConnectError) as info:
        qm.queries.enqueue("a", b"")
    assert time.monotonic() - started < 10
    assert "hunter2" not in str(info.value)
    assert "***" in str(info.value)
    assert isinstance(info.value, PgQueueError)

    @qm.entrypoint("a")
    def handler(job: Job) -> None:
        pass

    with pytest.raises(ConnectError):
        qm.run(dequeue_timeout=0.1)


def test_malformed_dsn_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="connection string") as info:
        PsycopgDriver("host=x password=hunter2 nonsense")
    assert "hunter2" not in str(info.value)


def test_driver_needs_a_connection_pool_or_string() -> None:
    with pytest.raises(ConfigurationError, match="PsycopgDriver needs"):
        PsycopgDriver(42)  # type: ignore[arg-type]


def test_a_run_without_handlers_is_refused(qm: QueueManager) -> None:
    with pytest.raises(ConfigurationError, match="no entrypoint"):
        qm.run()


@pytest.mark.parametrize("call", ["verify", "upgrade", "status", "enqueue", "run"])
def test_schema_not_installed_names_the_database_host_and_schema_it_looked_in(
    dsn: str, call: str
) -> None:
    """A script that connected to another database (libpq defaults, a wrong DSN) is told
    where it looked, not only that the queue is missing."""
    params = psycopg.conninfo.conninfo_to_dict(dsn)
    params.update(dbname="postgres", password="hunter2")  # trust auth: not checked
    driver = PsycopgDriver(psycopg.conninfo.make_conninfo("", **params))
    qm = QueueManager(driver, settings=Settings(schema="elsewhere", prefix="p_"))

    @qm.entrypoint("a")
    def handler(job: Job) -> None:
        pass

    calls: dict[str, Callable[[], object]] = {
        "verify": qm.queries.verify,
        "upgrade": qm.queries.upgrade,
        "status": qm.queries.status,
        "enqueue": lambda: qm.queries.enqueue("a", None),
        "run": lambda: qm.run(mode="drain", dequeue_timeout=0.1),
    }
    try:
        with pytest.raises(SchemaNotInstalledError) as info:
            calls[call]()
    finally:
        driver.close()
    message = str(info.value)
    host = params.get("host", "")
    assert message.startswith("schema not installed in schema 'elsewhere', prefix 'p_' of ")
    assert f"database 'postgres' on {host}:" in message
    assert "pgq-sync install" in message
    assert "hunter2" not in message
