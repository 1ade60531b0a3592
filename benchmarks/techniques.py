"""The techniques one by one: each switched off in turn, against the default build.

    python -m benchmarks.techniques [--pairs 3] [--jobs 20000] [--json PATH]

Paired, alternating runs (default first in even pairs) of the drain at batch 10 and 100
and of enqueue in lists of 1,000, with one technique switched off at a time:

- ``copy``: enqueue with one INSERT ... SELECT FROM unnest(...) instead of COPY.
- ``prepared``: no server-side prepared statements (psycopg's prepare_threshold = None).
- ``async_claim``: claims commit synchronously (no synchronous_commit = off).
- ``generic_plan``: the claim is planned at every run (no plan_cache_mode setting).
- ``fillfactor``: the queue table at fillfactor 100 instead of 80.
- ``gather``: the flusher writes what is pending at once (no 2 ms wait for more).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import psycopg

import pgqueue_sync.db
import pgqueue_sync.engine.flusher
import pgqueue_sync.queries
import pgqueue_sync.schema_queries
import pgqueue_sync.sql

from . import enqueue, throughput
from .common import base_parser, emit, median

Switch = Callable[[], contextlib.AbstractContextManager[None]]


@contextlib.contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextlib.contextmanager
def _no_copy() -> Iterator[None]:
    saved = pgqueue_sync.queries.COPY_THRESHOLD
    pgqueue_sync.queries.COPY_THRESHOLD = 10**9
    try:
        yield
    finally:
        pgqueue_sync.queries.COPY_THRESHOLD = saved


@contextlib.contextmanager
def _no_prepare() -> Iterator[None]:
    saved = pgqueue_sync.db._open

    def unprepared(*args: Any, **kwargs: Any) -> psycopg.Connection[Any]:
        conn = saved(*args, **kwargs)
        conn.prepare_threshold = None
        return conn

    pgqueue_sync.db._open = unprepared
    try:
        yield
    finally:
        pgqueue_sync.db._open = saved


@contextlib.contextmanager
def _fetch_session(drop: str) -> Iterator[None]:
    """The worker's fetch session without the setting ``drop`` (each run installs a queue
    in a new schema, whose statements are composed from the templates afresh)."""
    templates = pgqueue_sync.sql.templates()
    saved = templates["fetch_session"]
    kept = [s for s in saved.split(";") if drop not in s and s.strip()]
    templates["fetch_session"] = ";".join(kept) or "SELECT 1"
    try:
        yield
    finally:
        templates["fetch_session"] = saved


@contextlib.contextmanager
def _fillfactor_100() -> Iterator[None]:
    saved = pgqueue_sync.queries.Queries.install

    def install(self: pgqueue_sync.schema_queries.SchemaQueries) -> int:
        version = saved(self)
        with self._conn() as conn:
            conn.execute(
                f"ALTER TABLE {self.settings.ident('jobs').as_string(None)} SET (fillfactor = 100)"
            )
        return version

    pgqueue_sync.queries.Queries.install = install  # type: ignore[method-assign]
    try:
        yield
    finally:
        pgqueue_sync.queries.Queries.install = saved  # type: ignore[method-assign]


@contextlib.contextmanager
def _no_gather() -> Iterator[None]:
    saved = pgqueue_sync.engine.flusher.GATHER_BELOW
    pgqueue_sync.engine.flusher.GATHER_BELOW = 0
    try:
        yield
    finally:
        pgqueue_sync.engine.flusher.GATHER_BELOW = saved


SWITCHES: dict[str, Switch] = {
    "copy": _no_copy,
    "prepared": _no_prepare,
    "async_claim": lambda: _fetch_session("synchronous_commit"),
    "generic_plan": lambda: _fetch_session("plan_cache_mode"),
    "fillfactor": _fillfactor_100,
    "gather": _no_gather,
}


def measure(
    dsn: str, name: str, switch: Switch, pairs: int, jobs: int, enqueue_jobs: int
) -> dict[str, Any]:
    runs: dict[str, dict[str, list[float]]] = {
        "drain_10": {"on": [], "off": []},
        "drain_100": {"on": [], "off": []},
        "enqueue_1000": {"on": [], "off": []},
    }

    def once(key: str, off: bool) -> None:
        with switch() if off else _nothing():
            if key == "enqueue_1000":
                value = enqueue.enqueue_once(dsn, enqueue_jobs, 1000)["jobs_per_s"]
            else:
                size = int(key.split("_")[1])
                value = throughput.drain_once(dsn, jobs, size)["jobs_per_s"]
        runs[key]["off" if off else "on"].append(value)

    for p in range(pairs):
        for key in runs:
            if name == "copy" and key != "enqueue_1000":
                continue
            if name == "gather" and key == "enqueue_1000":
                continue
            for switched_off in (p % 2 == 1, p % 2 == 0):
                once(key, switched_off)
    out: dict[str, Any] = {"technique": name}
    for key, values in runs.items():
        if values["on"]:
            with_it, without = median(values["on"]), median(values["off"])
            out[key] = {
                "with": with_it,
                "without": without,
                "gain": with_it / without if without else None,
                **values,
            }
    return out


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "techniques")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--enqueue-jobs", type=int, default=50_000)
    parser.add_argument("--only", default=",".join(SWITCHES))
    args = parser.parse_args()
    rows = []
    for name in [n for n in args.only.split(",") if n]:
        row = measure(args.dsn, name, SWITCHES[name], args.pairs, args.jobs, args.enqueue_jobs)
        rows.append(row)
        summary = ", ".join(f"{k}: x{v['gain']:.2f}" for k, v in row.items() if isinstance(v, dict))
        print(f"{name}: {summary}")
    emit({"bench": "techniques", "pairs": args.pairs, "rows": rows}, args.json)


if __name__ == "__main__":
    main()
