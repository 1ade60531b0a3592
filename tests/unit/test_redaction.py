"""No password in any message: exceptions (and the causes a traceback prints), logs, the CLI.

Every shape below holds a password made of ``Hunter2`` and ``Secret``: well-formed (URI,
key=value, quoted, escaped, percent-encoded, in the URI's query, ``sslpassword``, a secret in
``options``) and malformed (unparseable, or parseable in a way that puts pieces of the
password in other fields). Nothing listens on the port, so each well-formed one fails to
connect. Neither the password nor any part of it may appear anywhere.
"""

from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from psycopg_pool import ConnectionPool

from pgqueue_sync import (
    ConfigurationError,
    ConnectError,
    Job,
    PgQueueError,
    PsycopgDriver,
    Queries,
    QueueManager,
    Settings,
)
from pgqueue_sync.redaction import redact_conninfo

# Pieces that must never be shown, whatever the shape put around them.
FRAGMENTS = ("Hunter2", "Secret", "unter2", "2Sec", "ecre")


def _closed_port() -> int:
    """A local port nothing listens on (bound then released: connections are refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


PORT = _closed_port()
H = f"127.0.0.1:{PORT}"
KV = f"host=127.0.0.1 port={PORT} connect_timeout=2"

# (id, conninfo, parseable)
SHAPES: list[tuple[str, str, bool]] = [
    # well-formed
    ("uri", f"postgresql://app:Hunter2Secret@{H}/db", True),
    ("uri-postgres-scheme", f"postgres://app:Hunter2Secret@{H}/db", True),
    ("uri-percent-encoded", f"postgresql://app:Hunter2%25Secret@{H}/db", True),
    ("uri-encoded-space", f"postgresql://app:Hunter2%20Secret@{H}/db", True),
    ("uri-encoded-at-slash", f"postgresql://app:Hunter2%40%2FSecret@{H}/db", True),
    ("uri-query-password", f"postgresql://{H}/db?password=Hunter2Secret", True),
    ("uri-multi-host", f"postgresql://app:Hunter2Secret@{H},{H}/db", True),
    ("uri-unencoded-hash", f"postgresql://app:Hunter2#Secret@{H}/db", True),
    ("uri-unencoded-colon", f"postgresql://app:Hunter2:Secret@{H}/db", True),
    ("kv", f"{KV} user=app password=Hunter2Secret", True),
    ("kv-spaces-around-equals", f"{KV} password = Hunter2Secret", True),
    ("kv-quoted-space", f"{KV} password='Hunter2 Secret'", True),
    ("kv-escaped-quote-backslash", f"{KV} password='Hunter2\\'Sec\\\\ret'", True),
    ("kv-password-first", f"password=Hunter2Secret {KV}", True),
    ("kv-sslpassword", f"{KV} sslpassword=Hunter2Secret", True),
    ("kv-secret-in-options", f"{KV} options='-c app.password=Hunter2Secret'", True),
    # parseable, but the password is not where libpq reads it: pieces land in other fields
    ("uri-unencoded-slash", f"postgresql://app:Hunter2/Secret@{H}/db", True),
    ("uri-unencoded-at", f"postgresql://app:Hunter2@Secret@{H}/db", True),
    # malformed
    ("uri-unterminated-ipv6", "postgresql://app:Hunter2Secret@[::1/db", False),
    ("uri-empty-ipv6", "postgresql://app:Hunter2Secret@[]/db", False),
    ("uri-bad-percent", f"postgresql://app:Hunter2%Secret@{H}/db", False),
    ("uri-percent-nul", f"postgresql://app:Hunter2%00Secret@{H}/db", False),
    ("uri-query-bad-percent", f"postgresql://{H}/db?password=Hunter2%Secret", False),
    ("uri-query-no-equals", f"postgresql://{H}/db?Hunter2Secret", False),
    ("uri-query-extra-equals", f"postgresql://{H}/db?password=Hunter2=Secret", False),
    ("uri-bad-char", "postgresql://app:Hunter2Secret@[::1]x/db", False),
    ("kv-unquoted-space", f"{KV} password=Hunter2 Secret", False),
    ("kv-unquoted-space-equals", f"{KV} password=Hunter2 Secret=x", False),
    ("kv-unterminated-quote", f"{KV} password='Hunter2Secret", False),
    ("kv-unterminated-escaped-quote", f"{KV} password='Hunter2\\'Secret", False),
    ("kv-uppercase-keyword", f"{KV} PASSWORD=Hunter2Secret", False),
    ("kv-no-equals", f"{KV} Hunter2Secret", False),
    ("kv-nul", f"{KV} password=Hunter2\x00Secret", False),
    ("kv-surrogate", f"{KV} password=Hunter2\udcffSecret", False),
]
IDS = [shape[0] for shape in SHAPES]


def assert_clean(text: str, where: str) -> None:
    for fragment in FRAGMENTS:
        assert fragment not in text, f"{fragment!r} shown in {where}: {text!r}"


def assert_error_clean(exc: BaseException) -> None:
    assert isinstance(exc, PgQueueError), f"untyped error {type(exc).__name__}: {exc}"
    assert_clean(str(exc), "str()")
    assert_clean(repr(exc), "repr()")
    assert_clean(repr(exc.args), "args")
    # What a traceback prints: the error, its __cause__ and __context__ chain.
    assert_clean("".join(traceback.format_exception(exc)), "the traceback")
    seen = exc.__cause__ or exc.__context__
    while seen is not None:
        if not seen.__suppress_context__ or seen is exc.__cause__:
            assert_clean(str(seen), f"the chained {type(seen).__name__}")
        seen = seen.__cause__ or (None if seen.__suppress_context__ else seen.__context__)


@pytest.fixture
def logs(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    caplog.set_level(logging.DEBUG)  # every logger: ours, psycopg's, psycopg_pool's
    yield caplog
    assert_clean(caplog.text, "the logs")
    for record in caplog.records:
        assert_clean(record.getMessage(), "a log record")
        if record.exc_info and record.exc_info[1] is not None:
            assert_error_clean(record.exc_info[1])


def raised(call: Callable[[], object]) -> BaseException:
    with pytest.raises(Exception) as info:  # noqa: PT011 - any type: typed is asserted
        call()
    return info.value


@pytest.mark.parametrize(("name", "conninfo", "parseable"), SHAPES, ids=IDS)
def test_no_password_in_any_error_or_log(
    name: str, conninfo: str, parseable: bool, logs: pytest.LogCaptureFixture
) -> None:
    assert_clean(redact_conninfo(conninfo), "redact_conninfo")
    if not parseable:
        error = raised(lambda: PsycopgDriver(conninfo, connect_timeout=2))
        assert_error_clean(error)
        assert isinstance(error, ConfigurationError)
        assert "could not be parsed" in str(error)
        return
    driver = PsycopgDriver(conninfo, connect_timeout=2)
    assert_clean(repr(driver), "repr(driver)")
    assert_clean(str(driver), "str(driver)")
    queries = Queries(driver, Settings(schema="nowhere"))
    qm = QueueManager(driver, settings=Settings(schema="nowhere"))

    @qm.entrypoint("a")
    def handler(job: Job) -> None:
        pass

    calls: list[Callable[[], object]] = [
        lambda: driver.connect("worker"),
        queries.verify,
        lambda: queries.enqueue("a", None),
        lambda: queries.wait_for([1], timeout=1),
        lambda: qm.run(dequeue_timeout=0.1),
    ]
    for call in calls:
        error = raised(call)
        assert_error_clean(error)
        assert isinstance(error, ConnectError | ConfigurationError)


def test_a_pool_with_a_malformed_conninfo(logs: pytest.LogCaptureFixture) -> None:
    pool: ConnectionPool[Any] = ConnectionPool(
        "postgresql://app:Hunter2Secret@[::1/db", open=False, kwargs={"connect_timeout": 2}
    )
    error = raised(lambda: PsycopgDriver(pool))
    assert_error_clean(error)
    assert isinstance(error, ConfigurationError)


def test_a_pool_with_a_password_in_its_kwargs(logs: pytest.LogCaptureFixture) -> None:
    pool: ConnectionPool[Any] = ConnectionPool(
        KV, open=False, kwargs={"password": "Hunter2 Secret", "connect_timeout": 2}
    )
    driver = PsycopgDriver(pool)
    assert_clean(repr(driver), "repr(driver)")
    assert_error_clean(raised(lambda: driver.connect("worker")))


def test_malformed_messages_still_say_what_is_wrong() -> None:
    cases = {
        "postgresql://app:Hunter2Secret@[::1/db": "IPv6",
        f"postgresql://app:Hunter2%Secret@{H}/db": "percent",
        f"{KV} password=Hunter2 Secret": "quote",
        f"{KV} password='Hunter2Secret": "unterminated",
        f"{KV} PASSWORD=Hunter2Secret": "keyword",
    }
    for conninfo, hint in cases.items():
        error = raised(lambda c=conninfo: PsycopgDriver(c))  # type: ignore[misc]
        assert hint in str(error), str(error)


def test_a_pool_with_unknown_keywords_in_its_kwargs() -> None:
    pool: ConnectionPool[Any] = ConnectionPool(KV, open=False, kwargs={"pasword": "Hunter2Secret"})
    error = raised(lambda: PsycopgDriver(pool))
    assert isinstance(error, ConfigurationError)
    assert_error_clean(error)
    assert "pasword" in str(error)


def test_connect_errors_keep_their_cause_when_it_is_safe() -> None:
    driver = PsycopgDriver(f"{KV} password=Hunter2Secret")
    error = raised(lambda: driver.connect("worker"))
    assert isinstance(error, ConnectError)
    assert error.__cause__ is not None  # libpq's error, for programs that look at it
    assert "refused" in str(error)


CLI_SHAPES = [s for s in SHAPES if s[0] in {
    "uri", "uri-unterminated-ipv6", "uri-bad-percent", "kv-unquoted-space",
    "kv-escaped-quote-backslash", "uri-unencoded-slash", "uri-unencoded-at",
    "kv-unterminated-quote",
}]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "conninfo", "parseable"), CLI_SHAPES, ids=[s[0] for s in CLI_SHAPES]
)
def test_no_password_in_the_cli_output(name: str, conninfo: str, parseable: bool) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQUEUE_", "PG"))}
    cli = os.path.join(os.path.dirname(sys.executable), "pgq-sync")
    # -v (the library's INFO lines) only where a worker runs: the demo.
    for args in (["verify", "--dsn", conninfo], ["demo", "-v", "--dsn", conninfo]):
        done = subprocess.run(
            [cli, *args], env=env, capture_output=True, text=True, timeout=60, check=False
        )
        assert done.returncode == 1, done.stderr
        assert "error:" in done.stderr
        assert "Traceback" not in done.stderr
        assert_clean(done.stdout + done.stderr, "the CLI's output")


@pytest.mark.parametrize(
    ("conninfo", "shown"),
    [
        ("postgresql://app:pw1234@db:5432/x", "user=app password=*** dbname=x host=db port=5432"),
        (
            "postgresql://app:pw1234@db/x?application_name=a@b",
            "user=app password=*** dbname=x host=db application_name=a@b",
        ),
        ("host=db password='a b c d' sslpassword=efgh", "password=*** host=db sslpassword=***"),
        ("", ""),
    ],
)
def test_well_formed_conninfo_is_shown_with_its_secrets_masked(conninfo: str, shown: str) -> None:
    assert redact_conninfo(conninfo) == shown
