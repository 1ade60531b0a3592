"""``pgq-sync demo``: enqueue and process jobs, on an embedded PostgreSQL unless a DSN is given.

The demo works in a schema it creates (``pgqueue_demo_<random>``, or ``--schema`` if no such
schema exists yet) and drops at the end, whatever happens: it never touches a queue of yours.
Ctrl-C (or SIGTERM) stops it gracefully and drops its schema (exit code 130, or 143); if its
output is closed (``pgq-sync demo | head``) it stops quietly (exit code 1).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from types import FrameType

import click
import psycopg.errors

from pgqueue_sync.db import PsycopgDriver
from pgqueue_sync.errors import PgQueueError
from pgqueue_sync.models import Job, JobStatus
from pgqueue_sync.qm import QueueManager
from pgqueue_sync.redaction import redact_conninfo
from pgqueue_sync.settings import Settings
from pgqueue_sync.sql import statements
from pgqueue_sync.translate import translate_errors

from .context import CliError, CliRefusal, QueueContext, with_queue

__all__ = ["demo"]

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class _Output:
    """Lines to stdout, flushed as they are written. Once the reader is gone (a closed
    pipe), every later line is dropped and ``on_gone`` is called, once."""

    def __init__(self) -> None:
        self.gone = False
        self.on_gone: Callable[[], None] = lambda: None
        self._lock = threading.Lock()

    def echo(self, text: str = "", nl: bool = True) -> None:
        with self._lock:
            if self.gone:
                return
            try:
                click.echo(text, nl=nl)
                return
            except BrokenPipeError:
                self.gone = True
                # What is still buffered, and the interpreter's last flush, go nowhere
                # instead of raising again at exit.
                with contextlib.suppress(OSError, ValueError):
                    devnull = os.open(os.devnull, os.O_WRONLY)
                    os.dup2(devnull, sys.stdout.fileno())
                    os.close(devnull)
        self.on_gone()


@contextlib.contextmanager
def _database(dsn: str | None, out: _Output) -> Iterator[tuple[str, str]]:
    if dsn:
        yield dsn, redact_conninfo(dsn)
        return
    from pgqueue_sync.embedded import embedded_postgres  # noqa: PLC0415 - optional dependency

    out.echo("no DSN given: starting an embedded PostgreSQL (pgserver) in a temporary directory")
    started = time.perf_counter()
    with embedded_postgres() as uri:
        out.echo(f"embedded PostgreSQL ready in {time.perf_counter() - started:.2f} s")
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
@click.option(
    "--keep", is_flag=True, help="Keep the demo's schema afterwards (with a DSN), to look at it."
)
@with_queue(
    quiet=logging.ERROR,  # the demo fails jobs on purpose: no warning per failure
    verbose=True,
    dsn_help="PostgreSQL conninfo or URI of a database to run on (default: $PGQUEUE_DSN; "
    "without either, an embedded PostgreSQL in a temporary directory: libpq's PG* "
    "variables are not used).",
)
def demo(queue: QueueContext, jobs: int, workers: int, batch_size: int, keep: bool) -> None:
    """Enqueue and process jobs, then say what happened.

    With no --dsn and no $PGQUEUE_DSN it starts an embedded PostgreSQL (pgserver) in a
    temporary directory and removes it afterwards. On your database it works in a new
    schema of its own (pgqueue_demo_<random>, or --schema if no such schema exists: one
    that exists is refused, exit code 2) and drops it at the end, even when interrupted
    (Ctrl-C: exit code 130; SIGTERM: 143).
    """
    code = _Demo(jobs, workers, batch_size, keep).main(queue)
    click.get_current_context().exit(code)


class _Demo:
    def __init__(self, jobs: int, workers: int, batch_size: int, keep: bool) -> None:
        self.jobs = jobs
        self.workers = workers
        self.batch_size = batch_size
        self.keep = keep
        self.out = _Output()
        self.out.on_gone = self._stop
        self.qm: QueueManager | None = None
        self.signal: int | None = None  # the stop signal received, if any
        self.running = False  # jobs are being run: a signal stops them gracefully
        self.cleaning = False  # the schema is being dropped: signals wait

    def _stop(self) -> None:
        if self.qm is not None:
            self.qm.alive = False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.cleaning:
            return
        self.signal = signum
        if self.running:
            self._stop()
        else:
            raise KeyboardInterrupt  # the cleanup runs on the way out

    @contextlib.contextmanager
    def _signals(self) -> Iterator[None]:
        """SIGINT and SIGTERM stop the demo, which then drops its schema. A signal the
        process was started ignoring (nohup, a shell's background job) stays ignored."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = {
            sig: signal.signal(sig, self._on_signal)
            for sig in STOP_SIGNALS
            if signal.getsignal(sig) is not signal.SIG_IGN
        }
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def main(self, queue: QueueContext) -> int:
        name = queue.schema or f"pgqueue_demo_{uuid.uuid4().hex[:8]}"
        settings = Settings.from_env(schema=name, prefix=queue.prefix)
        try:
            with self._signals(), _database(queue.dsn, self.out) as (dsn, where):
                driver = PsycopgDriver(dsn)
                try:
                    self._create_schema(driver, settings)
                    try:
                        return self._run(driver, settings, where)
                    finally:
                        # First: a statement cut by a signal ends its transaction (and frees
                        # its locks) with its connection.
                        driver.close()
                        self._clean_up(driver, settings, embedded=queue.dsn is None)
                finally:
                    driver.close()
        except KeyboardInterrupt:
            signum = self.signal or signal.SIGINT
            click.echo(f"demo interrupted ({signal.Signals(signum).name})", err=True)
            return 128 + signum

    def _create_schema(self, driver: PsycopgDriver, settings: Settings) -> None:
        with translate_errors(), driver.connection() as conn:
            try:
                conn.execute(statements(settings).create_schema)
            except psycopg.errors.DuplicateSchema:
                raise CliRefusal(
                    f"schema {settings.schema!r} already exists: the demo runs only in a schema "
                    "it creates, and drops it at the end, so that it never touches a queue of "
                    "yours. Leave out --schema (a new pgqueue_demo_<random> is used) or name a "
                    "schema that does not exist"
                ) from None

    def _clean_up(self, driver: PsycopgDriver, settings: Settings, *, embedded: bool) -> None:
        name = settings.schema
        if self.keep:
            if not embedded:  # an embedded server goes away with its schemas
                self.out.echo(f"kept schema {name!r} (drop it with: DROP SCHEMA {name} CASCADE)")
            return
        try:
            # A connection of its own: the shared one may have been cut by an interrupt.
            self.cleaning = True
            with translate_errors():
                conn = driver.connect("demo-cleanup")
                sql = statements(settings)
                try:
                    conn.execute(sql.drop_lock_timeout)  # never wait forever for a lock
                    conn.execute(sql.drop_schema)
                finally:
                    conn.close()
        except PgQueueError as exc:
            raise CliError(
                f"could not drop the demo's schema {name!r} ({exc}): drop it with "
                f"DROP SCHEMA {name} CASCADE"
            ) from exc
        finally:
            self.cleaning = False

    def _run(self, driver: PsycopgDriver, settings: Settings, where: str) -> int:
        out, n = self.out, self.jobs
        qm = self.qm = QueueManager(driver, settings=settings)
        qm.queries.install()
        out.echo(f"queue installed in {where}, schema {settings.schema!r}")

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
        out.echo(
            f"enqueued {n} jobs in {elapsed * 1000:.0f} ms ({n / elapsed:,.0f} jobs/s, one COPY)"
        )
        started = time.perf_counter()
        self._drain(qm)
        elapsed = time.perf_counter() - started
        if out.gone:
            return 1  # nobody reads the report: stop quietly
        if self.signal is not None:
            stats = qm.last_stats
            done = 0 if stats is None else stats.succeeded + stats.failed
            cleanup = "" if self.keep else f"; dropping its schema {settings.schema!r}"
            name = signal.Signals(self.signal).name
            click.echo(f"demo interrupted ({name}) after {done} of {n} jobs{cleanup}", err=True)
            return 128 + self.signal
        return self._report(qm, n, flaky_count, elapsed)

    def _drain(self, qm: QueueManager) -> None:
        done = threading.Event()
        progress = threading.Thread(target=self._progress, args=(qm, done), daemon=True)
        progress.start()
        self.running = True
        try:
            if not self.out.gone and self.signal is None:
                qm.run(
                    mode="drain",
                    workers=self.workers,
                    batch_size=self.batch_size,
                    dequeue_timeout=1.0,
                )
        finally:
            self.running = False
            done.set()
            progress.join()

    def _report(self, qm: QueueManager, n: int, flaky_count: int, elapsed: float) -> int:
        out = self.out
        counts: dict[str, int] = {}
        for entry in qm.queries.log(limit=n + 1):
            key = f"{entry.entrypoint}: {entry.status}"
            counts[key] = counts.get(key, 0) + 1
        processed = sum(counts.values())
        out.echo(
            f"processed {processed} jobs in {elapsed:.2f} s ({processed / elapsed:,.0f} jobs/s)"
        )
        for key in sorted(counts):
            out.echo(f"  {key:<32} {counts[key]}")
        left = sum(s.count for s in qm.queries.queue_size())
        out.echo(f"  left in the queue: {left}")
        if out.gone:
            return 1
        expected_failures = sum(1 for i in range(n - flaky_count, n) if i % 10 == 0)
        failures = sum(v for k, v in counts.items() if k.endswith(str(JobStatus.EXCEPTION)))
        if processed == n and left == 0 and failures == expected_failures:
            out.echo(
                "demo OK: every job ran once; the failures were recorded with their tracebacks"
            )
            return 0
        click.echo("demo FAILED: jobs are missing or were run twice", err=True)
        return 1

    def _progress(self, qm: QueueManager, done: threading.Event) -> None:
        tty = sys.stdout.isatty()
        started = time.perf_counter()
        interval = 0.2 if tty else 1.0
        while not done.wait(interval):
            stats = qm.stats
            if stats is None:
                continue
            count = stats.succeeded + stats.failed
            rate = count / max(1e-9, time.perf_counter() - started)
            line = f"  running: {count}/{self.jobs} jobs ({rate:,.0f} jobs/s)"
            self.out.echo(f"\r{line}" if tty else line, nl=not tty)
        if tty:
            self.out.echo()
