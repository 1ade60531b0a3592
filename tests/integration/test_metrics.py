"""Prometheus metrics: real jobs, scraped over HTTP from a real port.

The worker's metrics (``WorkerMetrics``) in a registry of the test's own, served by
``pgqueue_sync.metrics.serve``; ``pgq-sync run --metrics-port`` in one process and under a
supervisor (multiprocess mode, the children's counts added up); the queue's metrics
(``QueueCollector``, ``pgq-sync metrics``), and the same collector mounted in a Flask app.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import tempfile
import threading
import urllib.request
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
import tenacity
from flask import Flask
from prometheus_client import CollectorRegistry, make_wsgi_app
from prometheus_client.parser import text_string_to_metric_families
from psycopg import sql
from werkzeug.middleware.dispatcher import DispatcherMiddleware

from pgqueue_sync import Job, Queries, QueueManager, RetryPolicy
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.hooks import WorkerHooks
from pgqueue_sync.metrics import QueueCollector, WorkerMetrics, serve
from tests.conftest import Runner, eventually
from tests.integration.test_cli_run import PGQ, TESTS, ledger


@pytest.fixture
def app_env(dsn: str, schema: str) -> dict[str, str]:
    return {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema}


Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]

URL = re.compile(r"(http://127\.0\.0\.1:\d+/metrics)")


def scrape(url: str) -> Samples:
    """Every sample at ``url``, by name and labels."""
    with urllib.request.urlopen(url, timeout=10) as response:  # noqa: S310 - our own URL
        text = response.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float | None:
    return samples.get((name, tuple(sorted(labels.items()))))


def jobs_total(samples: Samples) -> dict[tuple[str, str], float]:
    return {
        (dict(labels)["entrypoint"], dict(labels)["status"]): v
        for (name, labels), v in samples.items()
        if name == "pgqueue_jobs_total"
    }


def test_jobs_counted_per_entrypoint_and_status_scraped_over_http(qm: QueueManager) -> None:
    registry = CollectorRegistry()
    qm.add_hooks(WorkerMetrics(registry))

    @qm.entrypoint("ok")
    def ok(job: Job) -> None:
        pass

    @qm.entrypoint("boom")
    def boom(job: Job) -> None:
        raise ValueError("on purpose")

    @qm.entrypoint(
        "flaky",
        retry=RetryPolicy(stop=tenacity.stop_after_attempt(2), wait=tenacity.wait_fixed(0)),
    )
    def flaky(job: Job) -> None:
        raise ValueError("twice")

    qm.queries.enqueue(["ok"] * 5 + ["boom"] * 3 + ["flaky"], [None] * 9)
    server = serve(registry, "127.0.0.1", 0)
    try:
        qm.run(mode="drain", workers=3, dequeue_timeout=0.2)
        samples = scrape(server.url)
    finally:
        server.close()
    assert jobs_total(samples) == {
        ("ok", "successful"): 5,
        ("boom", "exception"): 3,
        ("flaky", "retried"): 1,
        ("flaky", "failed"): 1,
    }
    assert value(samples, "pgqueue_job_duration_seconds_count", entrypoint="ok") == 5
    assert value(samples, "pgqueue_pickup_latency_seconds_count", entrypoint="flaky") == 2
    assert value(samples, "pgqueue_jobs_claimed_total") == 10
    # Every outcome was written by some flush; nothing was fenced.
    assert value(samples, "pgqueue_flush_outcomes_sum") == 10
    assert value(samples, "pgqueue_fenced_outcomes_total") == 0
    # The run is over: no thread, nothing buffered, nothing busy.
    assert value(samples, "pgqueue_threads") == 0
    assert value(samples, "pgqueue_threads_busy") == 0
    assert value(samples, "pgqueue_buffer_jobs") == 0


def test_busy_threads_and_buffer_while_jobs_run(qm: QueueManager) -> None:
    registry = CollectorRegistry()
    qm.add_hooks(WorkerMetrics(registry))
    release = threading.Event()
    started = threading.Semaphore(0)

    @qm.entrypoint("slow")
    def slow(job: Job) -> None:
        started.release()
        release.wait(30)

    qm.queries.enqueue(["slow"] * 3, [None] * 3)
    server = serve(registry, "127.0.0.1", 0)
    worker = threading.Thread(
        target=qm.run, kwargs={"mode": "drain", "workers": 2, "buffer_size": 4}, daemon=True
    )
    worker.start()
    try:
        for _ in range(2):
            assert started.acquire(timeout=30)
        # One claim took the three jobs: two handlers run them, the third waits in the
        # buffer.
        assert eventually(lambda: value(scrape(server.url), "pgqueue_buffer_jobs") == 1)
        samples = scrape(server.url)
        assert value(samples, "pgqueue_threads_busy") == 2
        assert value(samples, "pgqueue_threads") == 2
        assert value(samples, "pgqueue_buffer_capacity") == 4
    finally:
        release.set()
        worker.join(30)
        server.close()


@pytest.fixture
def reference_queue(qm: QueueManager) -> Queries:
    """3 jobs of ``a`` due, 2 deferred, 1 failed; 1 of ``b`` due."""
    queries = qm.queries
    queries.enqueue(["a"] * 3 + ["b"], [None] * 4)
    queries.enqueue(["a", "a"], [None, None], execute_after=timedelta(hours=1))
    [failing] = queries.enqueue("a", None, execute_after=timedelta(hours=2))
    with queries.driver.connection() as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET status = 'failed' WHERE id = %s").format(
                queries.settings.ident("jobs")
            ),
            (failing,),
        )
    return queries


def check_queue_samples(samples: Samples) -> None:
    expected = {
        ("a", "queued"): 3,
        ("a", "deferred"): 2,
        ("a", "picked"): 0,
        ("a", "failed"): 1,
        ("b", "queued"): 1,
        ("b", "failed"): 0,
    }
    for (entrypoint, status), count in expected.items():
        assert value(samples, "pgqueue_queue_jobs", entrypoint=entrypoint, status=status) == count
    assert value(samples, "pgqueue_queue_failed_jobs") == 1
    oldest = value(samples, "pgqueue_queue_oldest_waiting_seconds", entrypoint="a")
    assert oldest is not None
    assert 0 <= oldest < 600
    assert value(samples, "pgqueue_workers", state="live") == 0
    assert value(samples, "pgqueue_queue_up") == 1


def test_queue_metrics_scraped_over_http(reference_queue: Queries) -> None:
    registry = CollectorRegistry()
    registry.register(QueueCollector(reference_queue))
    server = serve(registry, "127.0.0.1", 0)
    try:
        check_queue_samples(scrape(server.url))
    finally:
        server.close()


def test_queue_metrics_mounted_in_a_flask_app(reference_queue: Queries) -> None:
    registry = CollectorRegistry()
    registry.register(QueueCollector(reference_queue))
    app = Flask(__name__)
    app.wsgi_app = DispatcherMiddleware(  # type: ignore[method-assign]
        app.wsgi_app, {"/metrics": make_wsgi_app(registry)}
    )
    response = app.test_client().get("/metrics")
    assert response.status_code == 200
    text = response.get_data(as_text=True)
    check_queue_samples(
        {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }
    )


def test_queue_metrics_report_a_failed_read(reference_queue: Queries) -> None:
    collector = QueueCollector(reference_queue)
    reference_queue.uninstall()
    registry = CollectorRegistry()
    registry.register(collector)
    assert registry.get_sample_value("pgqueue_queue_up") == 0


def started_on(log_path: Path, proc: subprocess.Popen[str]) -> str:
    """The metrics URL the process logged."""
    found: list[str] = []

    def logged() -> bool:
        assert proc.poll() is None, log_path.read_text()
        found.extend(URL.findall(log_path.read_text()))
        return bool(found)

    assert eventually(logged, timeout=60), log_path.read_text()
    return found[0]


@contextlib.contextmanager
def run_app(
    env: dict[str, str], log_path: Path, *args: str
) -> Iterator[tuple[subprocess.Popen[str], str]]:
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [PGQ, "run", "tests_app:make", "--metrics-port", "0", *args],
            cwd=TESTS,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            yield proc, started_on(log_path, proc)
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
            proc.wait(60)


def test_pgq_sync_run_serves_the_worker_metrics(
    queries: Queries, app_env: dict[str, str], tmp_path: Path
) -> None:
    ids = queries.enqueue(["alpha"] * 4 + ["fails"] * 2, [None] * 6)
    with run_app(app_env, tmp_path / "run.log", "--workers", "2") as (proc, url):
        queries.wait_for(ids, timeout=60)
        assert eventually(lambda: sum(jobs_total(scrape(url)).values()) == 6)
        assert jobs_total(scrape(url)) == {("alpha", "successful"): 4, ("fails", "exception"): 2}
    assert proc.returncode == 0


def test_pgq_sync_run_with_processes_adds_up_the_children(
    queries: Queries, app_env: dict[str, str], tmp_path: Path
) -> None:
    env = {**app_env, "TESTS_APP_JOB_SECONDS": "0.1"}
    before = set(Path(tempfile.gettempdir()).glob("pgq-metrics-*"))
    # One claim per child at a time, and little held: a child holds at most 3 of the 23 jobs
    # (0.1 s each), so the other, woken by the NOTIFY, gets some whatever the timing.
    args = ("--processes", "2", "--workers", "2", "--batch-size", "1", "--buffer-size", "1")
    with run_app(env, tmp_path / "run.log", *args) as (proc, url):
        assert set(Path(tempfile.gettempdir()).glob("pgq-metrics-*")) - before
        # Both children are up (each registers itself) before the jobs come.
        assert eventually(lambda: sum(not w.lost for w in queries.workers()) == 2, timeout=60)
        ids = queries.enqueue(["alpha"] * 20 + ["fails"] * 3, [None] * 23)
        queries.wait_for(ids, timeout=60)
        assert eventually(lambda: sum(jobs_total(scrape(url)).values()) == 23)
        assert jobs_total(scrape(url)) == {("alpha", "successful"): 20, ("fails", "exception"): 3}
        assert value(scrape(url), "pgqueue_threads") == 4
        # Both children ran jobs: the sum is of two processes' counts.
        assert len({pid for _, _, pid, _ in ledger(queries)}) == 2
    assert proc.returncode == 0
    # The supervisor removed the directory of the children's values.
    assert not set(Path(tempfile.gettempdir()).glob("pgq-metrics-*")) - before


def test_pgq_sync_metrics_serves_the_queue(
    reference_queue: Queries, dsn: str, tmp_path: Path
) -> None:
    schema = reference_queue.settings.schema
    env = {**os.environ, "PGQUEUE_DSN": dsn, "PGQUEUE_SCHEMA": schema}
    log_path = tmp_path / "metrics.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [PGQ, "metrics", "--port", "0"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            url = started_on(log_path, proc)
            check_queue_samples(scrape(url))
        finally:
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(30)
    assert code == 0, log_path.read_text()
    assert "pgq-sync metrics: stopped" in log_path.read_text()


class _Started(WorkerHooks):
    def __init__(self) -> None:
        self.worker: Worker | None = None
        self.event = threading.Event()

    def worker_started(self, worker: Worker) -> None:
        self.worker = worker
        self.event.set()


def test_a_lost_connection_counts_as_a_reconnect(
    qm: QueueManager, runner: Callable[..., Runner], conn: psycopg.Connection[Any]
) -> None:
    registry = CollectorRegistry()
    started = _Started()
    qm.add_hooks(WorkerMetrics(registry))
    qm.add_hooks(started)

    @qm.entrypoint("ok")
    def ok(job: Job) -> None:
        pass

    r = runner(qm)
    assert started.event.wait(30)
    assert started.worker is not None
    assert registry.get_sample_value("pgqueue_reconnects_total", {"connection": "listen"}) is None
    cut = conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = %s",
        (f"pgqueue-sync:listen:{started.worker.id.hex[:8]}",),
    ).fetchone()
    assert cut == (1,)

    def reconnected() -> bool:
        sample = registry.get_sample_value("pgqueue_reconnects_total", {"connection": "listen"})
        return sample == 1

    assert eventually(reconnected)
    assert registry.get_sample_value("pgqueue_reconnects_total", {"connection": "fetch"}) is None
    r.stop()


def test_a_handler_past_its_timeout_is_counted_once(qm: QueueManager) -> None:
    registry = CollectorRegistry()
    qm.add_hooks(WorkerMetrics(registry))
    release = threading.Event()

    @qm.entrypoint("stuck", timeout=0.2)
    def stuck(job: Job) -> None:
        release.wait(30)

    qm.queries.enqueue("stuck", None)
    try:
        qm.run(mode="drain", workers=1, dequeue_timeout=0.2)
    finally:
        release.set()
    assert (
        registry.get_sample_value(
            "pgqueue_jobs_total", {"entrypoint": "stuck", "status": "exception"}
        )
        == 1
    )
