"""The ``pgq-sync`` command: install, verify, inspect, and a demo on an embedded PostgreSQL."""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from types import FrameType

from ._version import __version__
from .db import PsycopgDriver
from .errors import PgQueueError, redact_conninfo
from .models import Job, JobStatus
from .qm import QueueManager
from .queries import Queries
from .settings import Settings

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--dsn",
        default=None,
        help="PostgreSQL conninfo or URI (default: $PGQUEUE_DSN, else libpq's PG* variables)",
    )
    common.add_argument("--schema", default=None, help="schema of the queue ($PGQUEUE_SCHEMA)")
    common.add_argument("--prefix", default=None, help="table prefix ($PGQUEUE_PREFIX)")
    common.add_argument("-v", "--verbose", action="store_true", help="log what the worker does")

    parser = argparse.ArgumentParser(
        prog="pgq-sync", description="pgqueue-sync: a sync-first PostgreSQL job queue."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    sub.add_parser("install", parents=[common], help="create or upgrade the queue's tables")
    uninstall = sub.add_parser(
        "uninstall", parents=[common], help="drop the queue's tables (jobs and log are lost)"
    )
    uninstall.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    sub.add_parser("verify", parents=[common], help="check the schema is installed and current")
    sub.add_parser("queue-size", parents=[common], help="jobs per entrypoint and status")
    log = sub.add_parser("log", parents=[common], help="the most recent job outcomes")
    log.add_argument("--limit", type=int, default=20)
    clear = sub.add_parser("clear", parents=[common], help="delete queued jobs")
    clear.add_argument("--entrypoint", action="append", help="only these entrypoints")
    demo = sub.add_parser(
        "demo",
        parents=[common],
        help="enqueue and process jobs; on an embedded PostgreSQL unless a DSN is given",
    )
    demo.add_argument("--jobs", type=int, default=5000, help="how many jobs (default 5000)")
    demo.add_argument("--workers", type=int, default=4, help="handler threads (default 4)")
    demo.add_argument("--batch-size", type=int, default=50, help="jobs per claim (default 50)")
    demo.add_argument(
        "--keep", action="store_true", help="keep the demo schema (with a DSN) afterwards"
    )
    return parser


def _settings(args: argparse.Namespace, default_schema: str | None = None) -> Settings:
    return Settings.from_env(schema=args.schema or default_schema, prefix=args.prefix)


def _dsn(args: argparse.Namespace) -> str | None:
    dsn: str | None = args.dsn or os.environ.get("PGQUEUE_DSN")
    return dsn


def _print_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> None:
    cells = [[str(c) for c in headers]] + [[str(c) for c in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    for n, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def _admin(args: argparse.Namespace) -> int:
    settings = _settings(args)
    driver = PsycopgDriver(_dsn(args) or "")
    queries = Queries(driver, settings)
    where = f"schema {settings.schema!r}" + (
        f", prefix {settings.prefix!r}" if settings.prefix else ""
    )
    try:
        if args.command == "install":
            version = queries.install()
            print(f"pgqueue-sync schema v{version} installed in {where}")
        elif args.command == "uninstall":
            if not args.yes:
                if not sys.stdin.isatty():
                    print("refusing to drop the queue without --yes", file=sys.stderr)
                    return 2
                answer = input(f"Drop the queue in {where}, with its jobs and log? [y/N] ")
                if answer.strip().lower() not in ("y", "yes"):
                    return 1
            queries.uninstall()
            print(f"pgqueue-sync schema removed from {where}")
        elif args.command == "verify":
            version = queries.verify()
            print(f"pgqueue-sync schema v{version} is installed and current in {where}")
        elif args.command == "queue-size":
            stats = queries.queue_size()
            _print_table(
                ("entrypoint", "status", "count"),
                [(s.entrypoint, s.status, s.count) for s in stats],
            )
        elif args.command == "log":
            entries = queries.log(limit=args.limit)
            _print_table(
                ("job", "entrypoint", "status", "attempts", "duration", "at"),
                [
                    (
                        e.job_id,
                        e.entrypoint,
                        e.status,
                        e.attempts,
                        e.duration,
                        e.created.isoformat(timespec="seconds"),
                    )
                    for e in entries
                ],
            )
        elif args.command == "clear":
            count = queries.clear_queue(args.entrypoint)
            print(f"deleted {count} queued job(s)")
    finally:
        driver.close()
    return 0


@contextlib.contextmanager
def _database(args: argparse.Namespace) -> Iterator[tuple[str, str]]:
    dsn = _dsn(args)
    if dsn:
        yield dsn, redact_conninfo(dsn)
        return
    from .embedded import embedded_postgres  # noqa: PLC0415 - optional dependency

    print("no DSN given: starting an embedded PostgreSQL (pgserver) in a temporary directory")
    started = time.perf_counter()
    with embedded_postgres() as uri:
        print(f"embedded PostgreSQL ready in {time.perf_counter() - started:.2f} s")
        yield uri, "embedded PostgreSQL"


def _demo(args: argparse.Namespace) -> int:
    if args.jobs < 1:
        print("--jobs must be at least 1", file=sys.stderr)
        return 2
    with _database(args) as (dsn, where):
        settings = _settings(args, default_schema="pgqueue_demo")
        driver = PsycopgDriver(dsn)
        try:
            return _run_demo(args, driver, settings, where)
        finally:
            driver.close()


def _run_demo(
    args: argparse.Namespace, driver: PsycopgDriver, settings: Settings, where: str
) -> int:
    qm = QueueManager(driver, settings=settings)
    qm.queries.install()
    print(f"queue installed in {where}, schema {settings.schema!r}")

    @qm.entrypoint("demo.checksum")
    def checksum(job: Job) -> bytes:
        return hashlib.sha256(job.payload or b"").hexdigest().encode()

    @qm.entrypoint("demo.flaky")
    def flaky(job: Job) -> None:
        number = int((job.payload or b"0").decode())
        if number % 10 == 0:
            raise ValueError(f"demo failure for job {job.id} (every tenth flaky job fails)")

    n = args.jobs
    flaky_count = max(1, n // 20)
    entrypoints = ["demo.checksum"] * (n - flaky_count) + ["demo.flaky"] * flaky_count
    payloads = [str(i).encode() for i in range(n)]
    started = time.perf_counter()
    qm.queries.enqueue(entrypoints, payloads, [i % 3 for i in range(n)])
    elapsed = time.perf_counter() - started
    print(f"enqueued {n} jobs in {elapsed * 1000:.0f} ms ({n / elapsed:,.0f} jobs/s, one COPY)")

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
        qm.run(mode="drain", workers=args.workers, batch_size=args.batch_size, dequeue_timeout=1.0)
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
    print(f"processed {processed} jobs in {elapsed:.2f} s ({processed / elapsed:,.0f} jobs/s)")
    for key in sorted(counts):
        print(f"  {key:<32} {counts[key]}")
    left = sum(s.count for s in qm.queries.queue_size())
    print(f"  left in the queue: {left}")
    if not args.keep:
        qm.queries.uninstall()
    ok = processed == n and left == 0
    expected_failures = sum(1 for i in range(n - flaky_count, n) if i % 10 == 0)
    failures = sum(v for k, v in counts.items() if k.endswith(str(JobStatus.EXCEPTION)))
    if ok and failures == expected_failures:
        print("demo OK: every job ran once; the failures were recorded with their tracebacks")
        return 0
    print("demo FAILED: jobs are missing or were run twice", file=sys.stderr)
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
        print(f"\r{line}" if tty else line, end="" if tty else "\n", flush=True)
    if tty:
        print()


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    # The demo fails some jobs on purpose: their warnings would drown its output.
    quiet = logging.ERROR if args.command == "demo" else logging.WARNING
    logging.basicConfig(
        level=logging.INFO if args.verbose else quiet,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        if args.command == "demo":
            return _demo(args)
        return _admin(args)
    except PgQueueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
