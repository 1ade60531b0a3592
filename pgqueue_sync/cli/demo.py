"""``pgq-sync demo``: enqueue and process jobs, on an embedded PostgreSQL unless a DSN is given."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from types import FrameType

import click

from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.errors import redact_conninfo
from pgqueue_sync.models import Job, JobStatus
from pgqueue_sync.qm import QueueManager
from pgqueue_sync.settings import Settings

from .context import QueueContext, with_queue

__all__ = ["demo"]


@contextlib.contextmanager
def _database(dsn: str | None) -> Iterator[tuple[str, str]]:
    if dsn:
        yield dsn, redact_conninfo(dsn)
        return
    from pgqueue_sync.embedded import embedded_postgres  # noqa: PLC0415 - optional dependency

    click.echo("no DSN given: starting an embedded PostgreSQL (pgserver) in a temporary directory")
    started = time.perf_counter()
    with embedded_postgres() as uri:
        click.echo(f"embedded PostgreSQL ready in {time.perf_counter() - started:.2f} s")
        yield uri, "embedded PostgreSQL"


@click.command()
@click.option(
    "--jobs", type=click.IntRange(min=1), default=5000, show_default=True, help="How many jobs."
)
@click.option(
    "--workers", type=click.IntRange(min=1), default=4, show_default=True, help="Handler threads."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    default=50,
    show_default=True,
    help="Jobs per claim.",
)
@click.option("--keep", is_flag=True, help="Keep the demo schema (with a DSN) afterwards.")
@with_queue(quiet=logging.ERROR)  # the demo fails jobs on purpose: no warning per failure
def demo(queue: QueueContext, jobs: int, workers: int, batch_size: int, keep: bool) -> None:
    """Enqueue and process jobs; on an embedded PostgreSQL unless a DSN is given."""
    with _database(queue.dsn) as (dsn, where):
        settings = Settings.from_env(schema=queue.schema or "pgqueue_demo", prefix=queue.prefix)
        driver = PsycopgDriver(dsn)
        try:
            code = _run_demo(driver, settings, where, jobs, workers, batch_size, keep)
        finally:
            driver.close()
    click.get_current_context().exit(code)


def _run_demo(
    driver: PsycopgDriver,
    settings: Settings,
    where: str,
    n: int,
    workers: int,
    batch_size: int,
    keep: bool,
) -> int:
    qm = QueueManager(driver, settings=settings)
    qm.queries.install()
    click.echo(f"queue installed in {where}, schema {settings.schema!r}")

    @qm.entrypoint("demo.checksum")
    def checksum(job: Job) -> bytes:
        return hashlib.sha256(job.payload or b"").hexdigest().encode()

    @qm.entrypoint("demo.flaky")
    def flaky(job: Job) -> None:
        number = int((job.payload or b"0").decode())
        if number % 10 == 0:
            raise ValueError(f"demo failure for job {job.id} (every tenth flaky job fails)")

    flaky_count = max(1, n // 20)
    entrypoints = ["demo.checksum"] * (n - flaky_count) + ["demo.flaky"] * flaky_count
    payloads = [str(i).encode() for i in range(n)]
    started = time.perf_counter()
    qm.queries.enqueue(entrypoints, payloads, [i % 3 for i in range(n)])
    elapsed = time.perf_counter() - started
    click.echo(
        f"enqueued {n} jobs in {elapsed * 1000:.0f} ms ({n / elapsed:,.0f} jobs/s, one COPY)"
    )

    def stop(signum: int, frame: FrameType | None) -> None:
        qm.alive = False

    previous = (
        signal.signal(signal.SIGINT, stop)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    done = threading.Event()
    progress = threading.Thread(target=_progress, args=(qm, n, done), daemon=True)
    started = time.perf_counter()
    progress.start()
    try:
        qm.run(mode="drain", workers=workers, batch_size=batch_size, dequeue_timeout=1.0)
    finally:
        done.set()
        progress.join()
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    elapsed = time.perf_counter() - started
    counts: dict[str, int] = {}
    for entry in qm.queries.log(limit=n + 1):
        key = f"{entry.entrypoint}: {entry.status}"
        counts[key] = counts.get(key, 0) + 1
    processed = sum(counts.values())
    click.echo(f"processed {processed} jobs in {elapsed:.2f} s ({processed / elapsed:,.0f} jobs/s)")
    for key in sorted(counts):
        click.echo(f"  {key:<32} {counts[key]}")
    left = sum(s.count for s in qm.queries.queue_size())
    click.echo(f"  left in the queue: {left}")
    if not keep:
        qm.queries.uninstall()
    ok = processed == n and left == 0
    expected_failures = sum(1 for i in range(n - flaky_count, n) if i % 10 == 0)
    failures = sum(v for k, v in counts.items() if k.endswith(str(JobStatus.EXCEPTION)))
    if ok and failures == expected_failures:
        click.echo("demo OK: every job ran once; the failures were recorded with their tracebacks")
        return 0
    click.echo("demo FAILED: jobs are missing or were run twice", err=True)
    return 1


def _progress(qm: QueueManager, total: int, done: threading.Event) -> None:
    tty = sys.stdout.isatty()
    started = time.perf_counter()
    interval = 0.2 if tty else 1.0
    while not done.wait(interval):
        worker = qm._worker
        if worker is None:
            continue
        count = worker.stats.succeeded + worker.stats.failed
        rate = count / max(1e-9, time.perf_counter() - started)
        line = f"  running: {count}/{total} jobs ({rate:,.0f} jobs/s)"
        click.echo(f"\r{line}" if tty else line, nl=not tty)
    if tty:
        click.echo()
