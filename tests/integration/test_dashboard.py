"""``pgq-sync dashboard`` in a real terminal: tmux runs it, the test reads the screen."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path

import pytest
import tenacity

from pgqueue_sync import Job, QueueManager, RetryPolicy, Settings
from tests.conftest import Runner, eventually

PGQ = str(Path(sys.executable).with_name("pgq-sync"))
GIVE_UP = RetryPolicy(stop=tenacity.stop_after_attempt(1))
FRAME_FILE = os.environ.get("PGQUEUE_DASHBOARD_FRAME")  # where to save the frame read


class Tmux:
    """A tmux server of its own (its own socket), one 160x50 session."""

    def __init__(self) -> None:
        self.socket = f"pgq-{uuid.uuid4().hex[:8]}"

    def __call__(self, *args: str) -> str:
        env = {k: v for k, v in os.environ.items() if k != "TMUX"}
        done = subprocess.run(
            ["tmux", "-L", self.socket, *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
            env=env,
        )
        return done.stdout

    def screen(self) -> str:
        return self("capture-pane", "-p", "-t", "dash")


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    if shutil.which("tmux") is None:
        pytest.skip("tmux is not installed")
    t = Tmux()
    yield t
    subprocess.run(["tmux", "-L", t.socket, "kill-server"], capture_output=True, check=False)


def row(screen: str, first: str) -> list[str]:
    [line] = [line for line in screen.splitlines() if line.split()[:1] == [first]]
    return line.split()


def test_the_dashboard_shows_a_known_queue(
    qm: QueueManager,
    dsn: str,
    settings: Settings,
    tmux: Tmux,
    runner: Callable[..., Runner],
) -> None:
    @qm.entrypoint("alpha")
    def alpha(job: Job) -> None:
        pass

    @qm.entrypoint("bad", retry=GIVE_UP)
    def bad(job: Job) -> None:
        raise ValueError("bad")

    qm.queries.enqueue(["alpha"] * 4 + ["bad"] * 2, [None] * 6)
    qm.run(mode="drain", dequeue_timeout=1.0, workers=2)
    producer = QueueManager(qm.driver, settings=settings, check_entrypoints=False)
    producer.queries.enqueue(["beta"] * 7, [None] * 7)
    producer.queries.enqueue(["beta"] * 2, [None] * 2, execute_after=timedelta(hours=1))
    producer.queries.pause("beta")
    r = runner(qm, workers=3, retry_timer=30)
    assert eventually(lambda: len(qm.queries.workers()) == 1)

    command = (
        f"PGQUEUE_DSN='{dsn}' PGQUEUE_SCHEMA={settings.schema} {PGQ} dashboard; "
        "echo EXIT=$?; sleep 60"
    )
    tmux("new-session", "-d", "-s", "dash", "-x", "160", "-y", "50", command)
    try:
        assert eventually(lambda: " running " in tmux.screen() and "beta" in tmux.screen(), 30), (
            tmux.screen()
        )
        screen = tmux.screen()
        # entrypoint, state, queued, deferred, running, failed, in/min, out/min, failures/min
        assert row(screen, "alpha")[:9] == ["alpha", "active", "0", "0", "0", "0", "4", "4", "0"]
        assert row(screen, "bad")[:9] == ["bad", "active", "0", "0", "0", "2", "2", "2", "2"]
        assert row(screen, "beta")[:9] == ["beta", "paused", "7", "2", "0", "0", "9", "0", "0"]
        worker = row(screen, str(qm.queries.workers()[0].id)[:8])
        assert worker[3:5] == ["running", "0/3"]
        assert worker[-2:] == ["alpha,", "bad"]
        assert "workers: 1 running" in screen
        if FRAME_FILE:
            Path(FRAME_FILE).write_text("\n".join(line.rstrip() for line in screen.splitlines()))
        tmux("send-keys", "-t", "dash", "q")
        assert eventually(lambda: "EXIT=0" in tmux.screen(), 10), tmux.screen()
    finally:
        r.stop()
