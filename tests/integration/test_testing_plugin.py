"""The pytest plugin, as a user's test suite sees it (pytester runs a suite of its own)."""

from __future__ import annotations

import psycopg
import pytest

pytest_plugins = ["pytester"]

USER_TESTS = """
import threading

import psycopg
import pytest

from pgqueue_sync import JobStatus, PsycopgDriver, QueueManager, Settings
from pgqueue_sync.testing import TemporaryQueue

# The application's queue manager, as the application builds it (somewhere else).
qm = QueueManager(PsycopgDriver("host=127.0.0.1 port=1 dbname=never_used"))
SCHEMAS = []


@qm.task(name="add")
def add(a: int, b: int) -> int:
    SEEN.append(threading.get_ident())
    if a < 0:
        raise ValueError(f"negative: {a}")
    return a + b


@qm.task(name="fan_out")
def fan_out(n: int) -> None:
    for i in range(n):
        add.enqueue(i, i)


SEEN = []


def test_drain_runs_the_jobs_in_this_thread(pgqueue: TemporaryQueue) -> None:
    SCHEMAS.append(pgqueue.schema)
    pgqueue.use(qm)
    first = add.enqueue(1, 2)
    fan_out.enqueue(2)
    outcomes = pgqueue.drain(qm)
    assert [(o.job.entrypoint, o.status, o.value) for o in outcomes] == [
        ("add", JobStatus.SUCCESSFUL, 3),
        ("fan_out", JobStatus.SUCCESSFUL, None),
        ("add", JobStatus.SUCCESSFUL, 0),
        ("add", JobStatus.SUCCESSFUL, 2),
    ]
    assert set(SEEN) == {threading.get_ident()}
    assert qm.queries.wait_for([first])[0].value == 3
    assert pgqueue.drain(qm) == []


def test_errors_are_reported_or_raised(pgqueue: TemporaryQueue) -> None:
    SCHEMAS.append(pgqueue.schema)
    pgqueue.use(qm)
    add.enqueue(-1, 0)
    [outcome] = pgqueue.drain(qm)
    assert outcome.status is JobStatus.EXCEPTION
    assert isinstance(outcome.error, ValueError)
    add.enqueue(-2, 0)
    with pytest.raises(ValueError, match="negative: -2"):
        pgqueue.drain(qm, raise_errors=True)


def test_each_test_has_a_queue_of_its_own(pgqueue: TemporaryQueue) -> None:
    SCHEMAS.append(pgqueue.schema)
    assert pgqueue.queries.queue_size() == []
    assert qm.settings == Settings()  # use() was undone after the last test


def test_the_schemas_are_dropped_after_each_test(pgqueue_dsn: str) -> None:
    with psycopg.connect(pgqueue_dsn) as conn:
        rows = conn.execute(
            "SELECT nspname FROM pg_namespace WHERE nspname = ANY(%s)", (SCHEMAS,)
        ).fetchall()
    assert len(SCHEMAS) == 3
    assert rows == []
"""


def test_the_plugin_gives_a_users_suite_a_queue_and_drain(
    pytester: pytest.Pytester, dsn: str
) -> None:
    pytester.makepyfile(test_user=USER_TESTS)
    result = pytester.runpytest_subprocess(
        "--pgqueue-dsn", dsn, "-W", "error", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=4)


def test_the_dsn_comes_from_the_ini_file_or_the_environment(
    pytester: pytest.Pytester, dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytester.makepyfile(
        test_user="""
        def test_it(pgqueue):
            assert pgqueue.queries.queue_size() == []
        """
    )
    monkeypatch.delenv("PGQUEUE_TEST_DSN", raising=False)
    pytester.makeini(f"[pytest]\npgqueue_dsn = {dsn}\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=1)
    pytester.makeini("[pytest]\n")
    monkeypatch.setenv("PGQUEUE_TEST_DSN", dsn)
    pytester.runpytest_subprocess().assert_outcomes(passed=1)


def test_without_a_database_the_fixture_says_how_to_give_one(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGQUEUE_TEST_DSN", raising=False)
    pytester.makepyfile(test_user="def test_it(pgqueue):\n    pass\n")
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*needs a test database: pass --pgqueue-dsn*"])


def test_a_wrong_password_is_not_shown(
    pytester: pytest.Pytester, dsn: str, conn: psycopg.Connection[object]
) -> None:
    pytester.makepyfile(test_user="def test_it(pgqueue):\n    pass\n")
    closed = "postgresql://someone:s3cret-pw@127.0.0.1:1/test"
    result = pytester.runpytest_subprocess("--pgqueue-dsn", closed)
    result.assert_outcomes(errors=1)
    assert "s3cret-pw" not in result.stdout.str() + result.stderr.str()
    result.stdout.fnmatch_lines(["*ConnectError*"])
