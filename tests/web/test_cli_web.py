"""``pgq-sync web``: served by waitress on 127.0.0.1 and a free port, the token required
when given and never printed; refusals before listening; the core never imports Flask."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from pgqueue_sync import QueueManager
from pgqueue_sync.cli import main

PGQ = str(Path(sys.executable).with_name("pgq-sync"))
TOKEN = "cli-token-0123456789-abcdefghij"


def get(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    request = urllib.request.Request(url, headers=headers or {})  # noqa: S310 - loopback
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def test_serves_the_dashboard_with_a_token_it_never_prints(
    dsn: str, schema: str, qm: QueueManager
) -> None:
    producer = QueueManager(qm.driver, settings=qm.settings, check_entrypoints=False)
    producer.queries.enqueue(["emails"] * 2, [None] * 2)
    env = {**os.environ, "PGQUEUE_WEB_TOKEN": TOKEN}
    proc = subprocess.Popen(
        [PGQ, "web", "--dsn", dsn, "--schema", schema, "--port", "0", "--actions"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert first.startswith(f"pgq-sync web: serving schema {schema!r} on http://127.0.0.1:")
        assert "(actions enabled, token required)" in first
        url = first.split(" on ", 1)[1].split("/ ", 1)[0]
        status, _ = get(f"{url}/api/overview.json")
        assert status == 401
        status, body = get(f"{url}/api/overview.json", {"Authorization": f"Bearer {TOKEN}"})
        assert status == 200
        assert '"entrypoint":"emails"' in body
        status, body = get(f"{url}/login")
        assert status == 200
        assert TOKEN not in body
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert out.strip().endswith("pgq-sync web: stopped")
    assert TOKEN not in first + out + err


def test_a_loopback_server_without_a_token_answers_loopback_names_only(
    dsn: str, schema: str, qm: QueueManager
) -> None:
    proc = subprocess.Popen(
        [PGQ, "web", "--dsn", dsn, "--schema", schema, "--port", "0", "--host", "127.0.0.2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "PGQUEUE_WEB_TOKEN"},
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "(read-only, no token: this machine only)" in first
        url = first.split(" on ", 1)[1].split("/ ", 1)[0]
        assert url.startswith("http://127.0.0.2:")
        assert get(f"{url}/paused", {"Host": "127.0.0.1"})[0] == 200
        assert get(f"{url}/paused", {"Host": "localhost"})[0] == 200
        # A page of another site whose name resolves here (DNS rebinding) is refused.
        assert get(f"{url}/paused", {"Host": "rebind.example"})[0] == 400
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0


def test_refusals_before_listening(
    dsn: str, schema: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PGQUEUE_WEB_TOKEN", raising=False)
    common = ["--dsn", dsn, "--schema", schema, "--port", "0"]
    assert main(["web", *common, "--host", "0.0.0.0"]) == 2  # noqa: S104 - refused, never bound
    assert "exposes the dashboard beyond this machine" in capsys.readouterr().err
    assert main(["web", *common, "--host", "::", "--token", "too-short"]) == 2
    err = capsys.readouterr().err
    assert "at least 16 characters" in err
    assert "too-short" not in err
    # The queue is not installed in this schema.
    assert main(["web", *common]) == 1
    assert "pgq-sync install" in capsys.readouterr().err


def test_without_the_web_extra_pgq_sync_web_says_what_to_install() -> None:
    code = (
        "import sys; sys.modules['waitress'] = None; "
        "from pgqueue_sync.cli import main; sys.exit(main(['web']))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 1
    assert 'pip install "pgqueue-sync[web]"' in done.stderr


def test_the_core_and_the_cli_do_not_import_flask() -> None:
    code = (
        "import sys, pgqueue_sync, pgqueue_sync_aio, pgqueue_sync.cli.app; "
        "loaded = {'flask', 'waitress', 'jinja2', 'werkzeug'} & set(sys.modules); "
        "print(sorted(loaded))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "[]"
