"""The async examples run as written: the issue's example on both loops, and the Starlette app."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from typing import Literal

import pytest
from starlette.testclient import TestClient

from pgqueue_sync import JobStatus, PsycopgDriver, Queries, Settings
from tests.integration.test_examples import EXAMPLES, libpq_env, load


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_asyncio_example_runs_as_written(
    loop: str, dsn: str, schema: str, driver: PsycopgDriver
) -> None:
    q = Queries(driver, Settings(schema=schema))
    q.install()
    proc = subprocess.Popen(
        [sys.executable, "-u", str(EXAMPLES / "asyncio_app.py"), *(["--trio"] * (loop == "trio"))],
        env=libpq_env(dsn, schema),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    processed = 0
    try:
        for line in proc.stdout:
            processed += line.count("Processed message: Job(")
            if processed >= 1000:
                break
        proc.send_signal(signal.SIGINT)  # the user's stop condition
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:  # a hang fails the test, and leaves no worker behind
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, err
    assert processed + out.count("Processed message:") == 1000
    log = q.log(limit=2000)
    assert len(log) == len({e.job_id for e in log}) == 1000
    assert {e.status for e in log} == {JobStatus.SUCCESSFUL}
    assert q.queue_size() == []


class SignallingStore:
    """The app's async store, as the test sees it: put() sets a threading.Event."""

    def __init__(self) -> None:
        self.items: dict[str, bytes] = {}
        self.stored = threading.Event()

    async def put(self, name: str, data: bytes) -> None:
        self.items[name] = data
        self.stored.set()

    async def get(self, name: str) -> bytes | None:
        return self.items.get(name)


@pytest.mark.parametrize("loop", ["asyncio", "trio"])
def test_starlette_example_enqueues_from_a_request_and_its_worker_runs_it(
    loop: Literal["asyncio", "trio"], dsn: str, schema: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PGQUEUE_DSN", dsn)
    monkeypatch.setenv("PGQUEUE_SCHEMA", schema)
    starlette_app = load("starlette_app")
    store = SignallingStore()
    with TestClient(starlette_app.create_app(store), backend=loop) as client:
        response = client.post("/images/cat.png")
        assert response.status_code == 202
        job_id = response.json()["job_id"]
        assert store.stored.wait(30)  # the worker ran the async handler on the app's loop
        assert client.get("/thumbnails/cat.png").text == "thumbnail of cat.png"
        assert client.get("/thumbnails/dog.png").status_code == 404
    # The lifespan stopped the worker gracefully: its outcome is written.
    queries = Queries(PsycopgDriver(dsn), Settings(schema=schema))
    try:
        [entry] = queries.log(job_ids=[job_id])
        assert entry.status is JobStatus.SUCCESSFUL
        assert entry.result == b"thumbnail of cat.png"
        assert queries.queue_size() == []
    finally:
        queries.driver.close()

    with TestClient(starlette_app.create_app(store, start_worker=False), backend=loop) as client:
        assert client.get(f"/jobs/{job_id}").json() == {"status": "successful"}
        pending = client.post("/images/dog.png").json()["job_id"]
        assert client.get(f"/jobs/{pending}").json() == {"status": "pending"}
        assert client.get("/jobs/999999999").status_code == 404
