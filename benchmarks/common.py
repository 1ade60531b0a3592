"""What every benchmark shares: the DSN, throwaway schemas, loading jobs, JSON output."""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import psycopg

from pgqueue_sync import PsycopgDriver, Queries, Settings

DEFAULT_DSN = "host=127.0.0.1 port=5432 user=postgres dbname=test"
ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"
ENTRYPOINT = "noop"


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


def load_jobs(queries: Queries, count: int, chunk: int = 10_000) -> None:
    """Enqueue ``count`` no-op jobs (COPY, ``chunk`` per statement)."""
    left = count
    while left > 0:
        n = min(chunk, left)
        queries.enqueue([ENTRYPOINT] * n, [None] * n)
        left -= n


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


def machine() -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }
    with contextlib.suppress(psycopg.Error), psycopg.connect(dsn_from_env()) as conn:
        row = conn.execute("SHOW server_version").fetchone()
        info["postgresql"] = row[0] if row else None
    return info


def emit(result: dict[str, Any], path: str | None) -> None:
    """Print the result as one JSON line; also write it to ``path`` (unless None or '-')."""
    result.setdefault("finished_at", time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))
    text = json.dumps(result, indent=None, sort_keys=True)
    print(text)
    sys.stdout.flush()
    if path and path != "-":
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(result, indent=2, sort_keys=True) + "\n")
