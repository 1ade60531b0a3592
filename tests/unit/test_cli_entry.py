"""The ``pgq-sync`` entry point: click stays optional, usage errors exit 2."""

from __future__ import annotations

import subprocess
import sys
from importlib.metadata import entry_points

import pytest

from pgqueue_sync.cli import main


def python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )


def test_the_console_script_is_the_module_that_needs_no_click() -> None:
    [script] = [ep for ep in entry_points(group="console_scripts") if ep.name == "pgq-sync"]
    assert script.value == "pgqueue_sync.cli:main"
    proc = python("import sys, pgqueue_sync.cli; print('click' in sys.modules)")
    assert proc.stdout.strip() == "False", proc.stderr


def test_without_click_pgq_sync_says_which_extra_to_install() -> None:
    proc = python(
        "import sys; sys.modules['click'] = None\n"  # as if click were not installed
        "from pgqueue_sync.cli import main\n"
        "sys.exit(main(['verify']))"
    )
    assert proc.returncode == 1
    assert proc.stdout == ""
    assert proc.stderr.strip() == 'pgq-sync needs the "cli" extra: pip install "pgqueue-sync[cli]"'


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    from pgqueue_sync import __version__  # noqa: PLC0415

    assert main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"pgq-sync {__version__}"


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["log", "--limit", "-1"], "--limit"),
        (["jobs", "--limit", "-1"], "--limit"),
        (["jobs", "--limit", "0"], "--limit"),
        (["jobs", "--status", "running"], "--status"),
        (["jobs", "show", "abc"], "ID"),
        (["requeue"], "give job ids, or --failed"),
        (["requeue", "1", "--failed"], "give job ids, or --failed"),
        (["requeue", "1", "--entrypoint", "a"], "--entrypoint goes with --failed"),
        (["cancel"], "ID"),
        (["pause"], "ENTRYPOINT"),
        (["purge", "--status", "picked"], "--status"),
        (["status", "-v"], "-v"),
        (["demo", "--jobs", "0"], "--jobs"),
        (["demo", "--workers", "0"], "--workers"),
        (["clear", "--no-such-option"], "--no-such-option"),
        (["no-such-command"], "no-such-command"),
    ],
)
def test_usage_errors_exit_2_before_any_database_is_touched(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # The DSN points at a closed port: a command that got as far as connecting would fail
    # with exit code 1 and a connection error instead.
    code = main([*args, "--dsn", "host=127.0.0.1 port=1 connect_timeout=1"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert named in err
    assert "could not connect" not in err


@pytest.mark.parametrize(
    ("args", "named"),
    [
        (["app:make", "--retry-timer", "0"], "--retry-timer"),
        (["app:make", "--workers", "0"], "--workers"),
        (["app:make", "--retry-timer", "1", "--heartbeat-interval", "0.9"], "heartbeat_interval"),
        (["app:make", "--mode", "sometimes"], "--mode"),
        (["no_colon"], "APP must be module:attribute"),
        (["no_such_module_here:make"], "no module named 'no_such_module_here'"),
        (["tests.tests_app:nothing"], "has no attribute 'nothing'"),
        (["tests.tests_app:LEDGER"], "is a str, not a QueueManager"),
        (["tests.tests_app:Ledger"], "must be a queue manager, or a callable that takes no"),
        (["./no/such/file.py:make"], "no such file"),
    ],
)
def test_run_refuses_a_bad_app_or_option_with_exit_code_2(
    args: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["run", *args, "--log-level", "error"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert named in err


def test_an_interrupted_command_exits_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def interrupted(self: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("pgqueue_sync.queries.Queries.status", interrupted)
    assert main(["queue-size", "--dsn", "host=127.0.0.1 port=1"]) == 130
    assert capsys.readouterr().err.strip() == "interrupted"
