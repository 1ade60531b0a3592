from __future__ import annotations

import os
import subprocess
import sys

import click
import pytest
from click.testing import CliRunner

from pgqueue_sync import PsycopgDriver, Queries, Settings
from pgqueue_sync.cli import main
from pgqueue_sync.cli.app import COMMANDS
from pgqueue_sync.cli.context import QueueContext


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_install_verify_inspect_uninstall(
    dsn: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--dsn", dsn, "--schema", schema)
    code, _, err = cli(capsys, "verify", *common)
    assert code == 1
    assert "pgq-sync install" in err
    code, out, _ = cli(capsys, "install", *common)
    assert (code, "installed" in out) == (0, True)
    code, out, _ = cli(capsys, "verify", *common)
    assert (code, "current" in out) == (0, True)
    code, out, _ = cli(capsys, "queue-size", *common)
    assert code == 0
    assert "entrypoint" in out
    code, out, _ = cli(capsys, "log", *common)
    assert code == 0
    code, out, _ = cli(capsys, "clear", *common)
    assert (code, out.strip()) == (0, "deleted 0 queued job(s)")
    code, _, err = cli(capsys, "uninstall", *common)
    assert code == 2
    assert "--yes" in err
    code, _, _ = cli(capsys, "uninstall", "--yes", *common)
    assert code == 0
    assert cli(capsys, "verify", *common)[0] == 1


def test_bad_schema_name_is_a_clear_error(dsn: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = cli(capsys, "install", "--dsn", dsn, "--schema", 'x"; DROP TABLE y; --')
    assert code == 1
    assert "invalid schema name" in err


def test_demo_on_a_given_database(
    dsn: str, schema: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "demo", "--dsn", dsn, "--schema", schema, "--jobs", "400")
    assert code == 0, out
    assert "demo OK" in out
    assert "processed 400 jobs" in out


def test_demo_with_no_dsn_runs_on_an_embedded_postgres() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGQUEUE_", "PG"))}
    proc = subprocess.run(
        [sys.executable, "-m", "pgqueue_sync.cli", "demo", "--jobs", "300"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "embedded PostgreSQL" in proc.stdout
    assert "demo OK" in proc.stdout


def test_the_commands_run_in_another_group_on_the_queue_it_gives_them(
    driver: PsycopgDriver, settings: Settings
) -> None:
    """A front end that knows its queue (a web framework's command group) reuses the
    commands: they take the settings and driver of the QueueContext it provides."""
    queries = Queries(driver, settings)
    queries.install()
    queries.enqueue(["a", "a", "b"], [None] * 3)

    @click.group()
    @click.pass_context
    def app(ctx: click.Context) -> None:
        ctx.obj = QueueContext(settings=settings, driver=driver)

    for command in COMMANDS:
        app.add_command(command)
    result = CliRunner().invoke(app, ["queue-size"])
    assert result.exit_code == 0, result.output
    assert result.output.split("\n")[2:4] == ["a           queued  2", "b           queued  1"]
    result = CliRunner().invoke(app, ["clear", "--entrypoint", "b"])
    assert (result.exit_code, result.output) == (0, "deleted 1 queued job(s)\n")
    assert queries.queue_size()  # the group's driver is still open
