from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from unittest import mock

import click
import pytest
import tenacity
from click.testing import CliRunner

from pgqueue_sync import Job, PsycopgDriver, Queries, QueueManager, RetryPolicy, Settings
from pgqueue_sync.cli import main
from pgqueue_sync.cli.app import COMMANDS
from pgqueue_sync.cli.context import CliRefusal, QueueContext


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
    assert (code, out) == (0, "no job in the queue\n")
    code, out, _ = cli(capsys, "log", *common)
    assert code == 0
    code, out, _ = cli(capsys, "purge", *common)
    assert (code, out.strip()) == (0, f"nothing to purge: no queued job in schema {schema!r}")
    code, _, err = cli(capsys, "uninstall", *common)
    assert code == 2
    assert "--yes" in err
    code, _, _ = cli(capsys, "uninstall", "--yes", *common)
    assert code == 0
    assert cli(capsys, "verify", *common)[0] == 1
    code, out, _ = cli(capsys, "uninstall", "--yes", *common)
    assert code == 0
    assert out.startswith(f"nothing to uninstall: no queue in schema {schema!r} of database ")


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
    assert [line.split() for line in result.output.splitlines()[2:4]] == [
        ["a", "queued", "2"],
        ["b", "queued", "1"],
    ]
    result = CliRunner().invoke(app, ["purge", "--entrypoint", "b", "--yes"])
    assert (result.exit_code, result.output) == (0, "deleted 1 queued job(s) of entrypoint 'b'\n")
    assert queries.queue_size()  # the group's driver is still open


GIVE_UP = RetryPolicy(stop=tenacity.stop_after_attempt(1))


@pytest.fixture
def failing(qm: QueueManager) -> list[int]:
    """Two failed jobs (kept, requeueable), two successful ones, one queued for later."""

    @qm.entrypoint("bad", retry=GIVE_UP)
    def bad(job: Job) -> None:
        raise ValueError("bad")

    @qm.entrypoint("good")
    def good(job: Job) -> None:
        pass

    ids = qm.queries.enqueue(["bad", "bad", "good", "good"], [None] * 4)
    qm.run(mode="drain", dequeue_timeout=1.0, workers=2)
    ids += qm.queries.enqueue("good", None, execute_after=timedelta(hours=1))
    return ids


def test_read_commands_print_json(
    dsn: str, schema: str, failing: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--dsn", dsn, "--schema", schema, "--json")
    code, out, _ = cli(capsys, "status", *common)
    assert code == 0
    rows = {r["entrypoint"]: r for r in json.loads(out)}
    assert (rows["bad"]["failed"], rows["good"]["deferred"], rows["good"]["queued"]) == (2, 1, 0)
    assert rows["good"]["done_last_minute"] == 2
    assert {"queued", "deferred", "picked", "failed", "oldest_waiting_seconds", "paused"} <= set(
        rows["bad"]
    )
    code, out, _ = cli(capsys, "queue-size", *common)
    assert json.loads(out) == [
        {"entrypoint": "bad", "status": "failed", "count": 2},
        {"entrypoint": "good", "status": "deferred", "count": 1},
    ]
    code, out, _ = cli(capsys, "jobs", "--status", "failed", "--limit", "1", *common)
    page = json.loads(out)
    assert [j["id"] for j in page["jobs"]] == [failing[1]]
    assert page["next_cursor"] == failing[1]
    code, out, _ = cli(
        capsys, "jobs", "--cursor", str(page["next_cursor"]), "--status", "failed", *common
    )
    assert [j["id"] for j in json.loads(out)["jobs"]] == [failing[0]]
    code, out, _ = cli(capsys, "jobs", "show", str(failing[0]), *common)
    detail = json.loads(out)
    assert detail["status"] == "failed"
    assert "ValueError: bad" in detail["traceback"]
    assert detail["job"]["attempts"] == 1
    code, out, _ = cli(capsys, "log", *common)
    assert len(json.loads(out)) == 4
    code, out, _ = cli(capsys, "workers", *common)
    assert (code, json.loads(out)) == (0, [])


def test_jobs_show_prints_every_field_and_the_traceback(
    dsn: str, schema: str, failing: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = cli(capsys, "jobs", "show", str(failing[0]), "--dsn", dsn, "--schema", schema)
    assert code == 0
    for label in ("entrypoint", "status", "attempts", "due", "worker", "headers", "payload"):
        assert f"\n{label} " in f"\n{out}"
    assert "outcomes" in out
    assert out.rstrip().endswith("ValueError: bad")
    code, _, err = cli(capsys, "jobs", "show", "999999", "--dsn", dsn, "--schema", schema)
    assert code == 1
    assert "no job with id 999999" in err


def test_requeue_and_cancel_say_what_changed_and_what_was_not_found(
    dsn: str, schema: str, failing: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--dsn", dsn, "--schema", schema)
    bad, _, done, _, later = failing
    code, out, _ = cli(capsys, "requeue", str(bad), str(done), str(later), "999999", *common)
    assert code == 1  # an id was not found
    assert out.splitlines() == [
        f"requeued (1): {bad}",
        f"not requeued, still queued or running (1): {later}",
        f"not requeued, finished (only in the log: enqueue them again) (1): {done}",
        "not found (1): 999999",
    ]
    code, out, _ = cli(capsys, "requeue", "--failed", "--entrypoint", "bad", *common)
    assert (code, out) == (0, f"requeued (1): {failing[1]}\n")
    code, out, _ = cli(capsys, "requeue", "--failed", *common)
    assert (code, out) == (0, "requeued nothing\n")
    code, out, _ = cli(capsys, "cancel", str(later), str(done), *common)
    assert code == 0
    assert out.splitlines() == [f"canceled (1): {later}", f"already finished (1): {done}"]
    code, out, _ = cli(capsys, "cancel", "424242", "--json", *common)
    assert code == 1
    assert json.loads(out)["unknown"] == [424242]


def test_purge_asks_unless_yes_and_can_target_failed_jobs(
    dsn: str, schema: str, failing: list[int], capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--dsn", dsn, "--schema", schema)
    code, _, err = cli(capsys, "purge", "--status", "failed", *common)
    assert code == 2  # stdin is not a terminal: nobody to ask
    assert "refusing to purge without --yes" in err
    code, out, _ = cli(capsys, "purge", "--status", "failed", "--yes", *common)
    assert (code, out) == (0, "deleted 2 failed job(s)\n")
    code, out, _ = cli(
        capsys, "purge", "--status", "queued", "--status", "failed", "--yes", *common
    )
    assert (code, out) == (
        0,
        "deleted 1 failed and queued job(s)\n".replace("failed and queued", "failed and queued"),
    )


def test_purge_asks_on_a_terminal(
    driver: PsycopgDriver, settings: Settings, failing: list[int]
) -> None:
    @click.group()
    @click.pass_context
    def app(ctx: click.Context) -> None:
        ctx.obj = QueueContext(settings=settings, driver=driver)

    app.add_command(COMMANDS[[c.name for c in COMMANDS].index("purge")])
    runner = CliRunner()
    with mock.patch("pgqueue_sync.cli.context.interactive", return_value=True):
        result = runner.invoke(app, ["purge", "--status", "failed"], input="n\n")
        assert result.exit_code == 1
        assert "Delete 2 failed job(s) in schema" in result.output
        assert Queries(driver, settings).list_jobs(status="failed").jobs != []
        result = runner.invoke(app, ["purge", "--status", "failed"], input="y\n")
    assert result.exit_code == 0, result.output
    assert result.output.endswith("deleted 2 failed job(s)\n")


def test_pause_and_resume_show_in_status(
    dsn: str, schema: str, qm: QueueManager, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ("--dsn", dsn, "--schema", schema)
    assert cli(capsys, "pause", "emails", "sms", "--reason", "provider down", *common)[1] == (
        "paused: emails, sms\n"
    )
    assert cli(capsys, "pause", "emails", *common)[1] == "already paused: emails\n"
    rows = json.loads(cli(capsys, "status", "--json", *common)[1])
    assert [(r["entrypoint"], r["paused"]) for r in rows] == [("emails", True), ("sms", True)]
    assert cli(capsys, "resume", "emails", "fax", *common)[1] == (
        "resumed: emails\nnot paused: fax\n"
    )
    assert [p.entrypoint for p in qm.queries.paused()] == ["sms"]


def test_verbose_is_an_option_only_where_a_worker_runs(capsys: pytest.CaptureFixture[str]) -> None:
    for command in COMMANDS:
        params = {o for p in command.params for o in getattr(p, "opts", [])}
        assert ("-v" in params) == (command.name in ("run", "demo")), command.name
        for param in command.params:
            if isinstance(param, click.Option) and not param.hidden:
                assert param.help, f"{command.name} {param.opts} has no help text"


def test_demo_help_says_where_it_runs_as_the_readme_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "$PGQUEUE_DSN" in text
    assert "embedded PostgreSQL" in text
    assert "libpq's PG* variables are not used" in text
    readme = " ".join((Path(__file__).resolve().parents[2] / "README.md").read_text().split())
    assert "libpq's `PG*` variables are not used" in readme


def test_driver_options_apply_to_the_worker_only(dsn: str, settings: Settings) -> None:
    from pgqueue_sync.cli.run import apply_driver_options  # noqa: PLC0415

    app_driver = PsycopgDriver(dsn)
    qm = QueueManager(app_driver, settings=settings)
    apply_driver_options(qm, None, False)
    assert qm.driver is app_driver  # nothing asked: nothing changed
    apply_driver_options(qm, dsn, True)
    worker_driver = qm.driver
    assert isinstance(worker_driver, PsycopgDriver)
    assert (worker_driver.listen_dsn, worker_driver.transaction_pooling) == (dsn, True)
    assert qm.queries.driver is app_driver  # what the application enqueues: as it built it
    with pytest.raises(CliRefusal, match="already has another listen_dsn"):
        apply_driver_options(qm, dsn + " application_name=x", False)

    class OwnDriver(PsycopgDriver):
        pass

    other = QueueManager(mock.Mock(spec=[]), settings=settings)
    with pytest.raises(CliRefusal, match="configure a PsycopgDriver; APP's driver is a Mock"):
        apply_driver_options(other, None, True)
    del OwnDriver
