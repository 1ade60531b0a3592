"""PsycopgDriver's options for poolers (no database: nothing here connects)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg.errors
import pytest
from psycopg_pool import ConnectionPool

from pgqueue_sync import (
    ConfigurationError,
    DatabaseError,
    PsycopgDriver,
    Settings,
    TransactionPoolingError,
)
from pgqueue_sync.clock import SystemClock
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.buffer import Mailbox
from pgqueue_sync.options import RunOptions
from pgqueue_sync.registry import Entrypoint
from pgqueue_sync.translate import translate_errors

DSN = "host=127.0.0.1 port=6432 user=app password=Hunter2Secret dbname=app"
DIRECT = "host=127.0.0.1 port=5432 user=app password=Listen2Secret dbname=app"


def test_listen_follows_the_options() -> None:
    assert PsycopgDriver(DSN).can_listen
    assert PsycopgDriver(DSN, listen_dsn=DIRECT).can_listen
    assert PsycopgDriver(DSN, listen_dsn=DIRECT, transaction_pooling=True).can_listen
    assert not PsycopgDriver(DSN, transaction_pooling=True).can_listen
    assert PsycopgDriver(DSN, transaction_pooling=True).transaction_pooling
    assert not PsycopgDriver(DSN).transaction_pooling


def test_listening_through_a_transaction_pooler_without_listen_dsn_is_refused() -> None:
    driver = PsycopgDriver(DSN, transaction_pooling=True)
    with pytest.raises(ConfigurationError, match="listen_dsn"):
        driver.connect_listener("listen:x")


@pytest.mark.parametrize("bad", ["host=x port", "postgresql://app:Listen2Secret@[::1/db"])
def test_a_malformed_listen_dsn_is_a_configuration_error_without_its_password(bad: str) -> None:
    with pytest.raises(ConfigurationError, match="listen_dsn") as info:
        PsycopgDriver(DSN, listen_dsn=bad)
    assert "Listen2Secret" not in str(info.value)


def test_transaction_pooling_must_be_a_bool() -> None:
    with pytest.raises(ConfigurationError, match="transaction_pooling"):
        PsycopgDriver(DSN, transaction_pooling="yes")  # type: ignore[arg-type]


def test_repr_shows_the_options_without_passwords() -> None:
    text = repr(PsycopgDriver(DSN, listen_dsn=DIRECT, transaction_pooling=True))
    assert "transaction_pooling=True" in text
    assert "listen_dsn" in text
    assert "port=5432" in text
    assert "Hunter2Secret" not in text
    assert "Listen2Secret" not in text


@pytest.mark.parametrize("threshold", [None, 0, 5])
def test_a_pool_with_psycopg_only_kwargs_gives_workers_a_valid_conninfo(
    threshold: int | None,
) -> None:
    pool: ConnectionPool[Any] = ConnectionPool(
        DSN, open=False, kwargs={"autocommit": True, "prepare_threshold": threshold}
    )
    driver = PsycopgDriver(pool, transaction_pooling=True)
    assert "prepare_threshold" not in driver.conninfo
    assert "port=6432" in driver.conninfo


@pytest.mark.parametrize(
    "error",
    [
        psycopg.errors.InvalidSqlStatementName('prepared statement "_pg3_0" does not exist'),
        psycopg.errors.DuplicatePreparedStatement('prepared statement "_pg3_12" already exists'),
    ],
)
def test_a_lost_automatic_prepared_statement_says_what_to_do(error: psycopg.Error) -> None:
    with (
        pytest.raises(TransactionPoolingError, match=r"transaction_pooling=True"),
        translate_errors(),
    ):
        raise error


def test_a_users_own_prepared_statement_stays_a_database_error() -> None:
    with pytest.raises(DatabaseError) as info, translate_errors():
        raise psycopg.errors.InvalidSqlStatementName('prepared statement "mine" does not exist')
    assert not isinstance(info.value, TransactionPoolingError)


def steps(driver: PsycopgDriver) -> Worker:
    """A worker over ``driver`` (nothing connects before run())."""
    return Worker(
        driver=driver,
        settings=Settings(),
        clock=SystemClock(),
        registry={"k": Entrypoint(name="k", func=lambda job: None)},
        options=RunOptions(),
        shutdown=threading.Event(),
        mailbox=Mailbox(),
    )


def test_a_worker_behind_a_transaction_pooler_keeps_no_session_and_may_not_listen() -> None:
    pooled = steps(PsycopgDriver(DSN, transaction_pooling=True))
    assert pooled.fetch_store.async_commit_claims  # instead of the session's SET
    assert not pooled.listening
    assert steps(PsycopgDriver(DSN, transaction_pooling=True, listen_dsn=DIRECT)).listening
    direct = steps(PsycopgDriver(DSN))
    assert not direct.fetch_store.async_commit_claims
    assert direct.listening
