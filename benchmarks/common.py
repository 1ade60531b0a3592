"""What every benchmark shares: the DSN, throwaway schemas, loading jobs, JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import platform
import statistics
import sys
import threading
import time
import uuid
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import psycopg

from pgqueue_sync import Job, JobStatus, PsycopgDriver, Queries, QueueManager, Settings

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENTRYPOINT = "noop"
# The claims' retry_timer in the claim-cycle benchmarks (no job is ever stale there).
RETRY_TIMER = timedelta(minutes=1)


def dsn_from_env() -> str:
    return os.environ.get("PGQUEUE_DSN", DEFAULT_DSN)


def base_parser(description: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--dsn", default=dsn_from_env(), help="PostgreSQL conninfo")
    parser.add_argument(
        "--json",
        default=None,
        metavar="PATH",
        help="also write the result as JSON to PATH ('-' for stdout only)",
    )
    return parser


def new_schema(tag: str) -> str:
    return f"bench_{tag}_{uuid.uuid4().hex[:8]}"


@contextlib.contextmanager
def throwaway_schema(dsn: str, tag: str) -> Iterator[str]:
    """A fresh schema name; the schema (whatever made it) is dropped afterwards."""
    schema = new_schema(tag)
    try:
        yield schema
    finally:
        with psycopg.connect(dsn, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


@contextlib.contextmanager
def installed_queue(dsn: str, tag: str) -> Iterator[tuple[Settings, Queries]]:
    """A queue installed in a throwaway schema, and Queries over a connection of its own."""
    with throwaway_schema(dsn, tag) as schema, psycopg.connect(dsn, autocommit=True) as conn:
        settings = Settings(schema=schema)
        queries = Queries(PsycopgDriver(conn), settings)
        queries.install()
        yield settings, queries


def load_jobs(
    queries: Queries,
    count: int,
    chunk: int = 10_000,
    headers: dict[str, Any] | None = None,
) -> None:
    """Enqueue ``count`` no-op jobs (COPY, ``chunk`` per statement), each with ``headers``."""
    left = count
    while left > 0:
        n = min(chunk, left)
        queries.enqueue([ENTRYPOINT] * n, [None] * n, headers=headers)
        left -= n


def timed_drain(qm: QueueManager, jobs: int, **run_options: Any) -> float:
    """Seconds ``qm.run(mode="drain", **run_options)`` takes to run ``jobs`` no-op jobs
    (a handler that counts them; RuntimeError if any is missing)."""
    done = 0
    lock = threading.Lock()

    @qm.entrypoint(ENTRYPOINT)
    def noop(job: Job) -> None:
        nonlocal done
        with lock:
            done += 1

    started = time.perf_counter()
    qm.run(mode="drain", **run_options)
    seconds = time.perf_counter() - started
    if done != jobs:
        raise RuntimeError(f"drained {done} of {jobs} jobs")
    return seconds


def claim_cycles(
    dsn: str, settings: Settings, queries: Queries, claims: int, batch_size: int
) -> Iterator[tuple[int, float, float]]:
    """Up to ``claims`` claims of ``batch_size`` jobs with the worker's statement, in a
    session set up as a worker's fetch connection, each followed by the completion of its
    jobs (the worker's statement, on a connection of its own) and, untimed, as many jobs
    enqueued again, so that every claim sees the same backlog. Per claim: the jobs claimed,
    the claim's seconds and the completion's; it stops early at an empty claim."""
    # The engine's internals, imported here only: the public API above is all that the
    # other benchmarks need, which lets benchmarks.compare run them on older revisions.
    from pgqueue_sync.connection import ManagedConnection  # noqa: PLC0415
    from pgqueue_sync.engine.store import Store  # noqa: PLC0415
    from pgqueue_sync.models import Outcome  # noqa: PLC0415
    from pgqueue_sync.sql import statements  # noqa: PLC0415

    worker = uuid.uuid4()
    session = (statements(settings).fetch_session,)
    fetch_conn = ManagedConnection(PsycopgDriver(dsn), "bench-fetch", setup=session)
    try:
        with psycopg.connect(dsn, autocommit=True) as complete_conn:
            fetch = Store(fetch_conn, settings)
            complete = Store(PsycopgDriver(complete_conn), settings)
            for _ in range(claims):
                started = time.perf_counter()
                jobs = fetch.dequeue(batch_size, [ENTRYPOINT], worker, RETRY_TIMER)
                claimed = time.perf_counter()
                if not jobs:
                    return
                done = complete.complete(
                    worker, [Outcome(j.id, j.attempts, JobStatus.SUCCESSFUL, 0.0) for j in jobs]
                )
                completed = time.perf_counter()
                if len(done.finished) != len(jobs):
                    raise RuntimeError("a completion was refused")
                yield len(jobs), claimed - started, completed - claimed
                queries.enqueue([ENTRYPOINT] * len(jobs), [None] * len(jobs))
    finally:
        fetch_conn.close()


def vacuum_analyze(dsn: str, settings: Settings) -> None:
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f"VACUUM ANALYZE {settings.ident('jobs').as_string(conn)}")


def median(values: Sequence[float]) -> float:
    return float(statistics.median(values)) if values else float("nan")


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0..100), nearest rank."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q / 100 * len(ordered) + 0.5) - 1))
    return float(ordered[rank])


def _python_loop_ms() -> float:
    """Milliseconds for a fixed loop of interpreted additions (best of three): how fast this
    machine runs Python, to compare runs made on different machines."""
    best = math.inf
    for _ in range(3):
        started = time.perf_counter()
        total = 0
        for i in range(1_000_000):
            total += i
        best = min(best, time.perf_counter() - started)
    return 1000 * best


def machine() -> dict[str, Any]:
    """What the numbers were measured on, with three calibrations: a Python loop
    (``python_loop_ms``), a ``SELECT 1`` round trip (``round_trip_us``, median of 200) and
    a one-row INSERT committed, its WAL flushed (``commit_ms``, median of 50). A queue's
    absolute numbers follow them; its ratios to a peer measured in the same run much less."""
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "python_loop_ms": _python_loop_ms(),
    }
    with (
        contextlib.suppress(psycopg.Error),
        psycopg.connect(dsn_from_env(), autocommit=True) as conn,
    ):
        row = conn.execute("SHOW server_version").fetchone()
        info["postgresql"] = row[0] if row else None
        trips = []
        for _ in range(200):
            started = time.perf_counter()
            conn.execute("SELECT 1", prepare=True)
            trips.append(time.perf_counter() - started)
        info["round_trip_us"] = 1e6 * statistics.median(trips)
        table = f"bench_calibration_{uuid.uuid4().hex[:8]}"
        conn.execute(f"CREATE TABLE {table} (x integer)")
        try:
            commits = []
            for _ in range(50):
                started = time.perf_counter()
                conn.execute(f"INSERT INTO {table} VALUES (1)")  # commits, flushing the WAL
                commits.append(time.perf_counter() - started)
            info["commit_ms"] = 1e3 * statistics.median(commits)
        finally:
            conn.execute(f"DROP TABLE {table}")
    return info


def _check_tree() -> None:
    """Under benchmarks.compare (``PGQUEUE_BENCH_TREE`` names the tree measured): every
    module of the package must have come from that tree. An editable install finds a module
    an older revision lacks in the checkout it was installed from instead, which would mix
    two revisions in one measure."""
    tree = os.environ.get("PGQUEUE_BENCH_TREE")
    if not tree:
        return
    root = Path(tree).resolve()
    strays = sorted(
        str(module.__file__)
        for name, module in list(sys.modules.items())
        if name.split(".")[0] in ("pgqueue_sync", "pgqueue_sync_aio")
        and getattr(module, "__file__", None)
        and not Path(str(module.__file__)).resolve().is_relative_to(root)
    )
    if strays:
        raise RuntimeError(f"measured code from outside {root}: {', '.join(strays[:3])}")


def emit(result: dict[str, Any], path: str | None) -> None:
    """Print the result as one JSON line; also write it to ``path`` (unless None or '-')."""
    _check_tree()
    result.setdefault("finished_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    text = json.dumps(result, indent=None, sort_keys=True)
    print(text)
    sys.stdout.flush()
    if path and path != "-":
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
