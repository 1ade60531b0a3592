"""Every benchmark, side by side: pgqueue-sync, the peer (pgqueuer) and the SQL ceiling.

    python -m benchmarks.all [--rounds 3] [--quick] [--json PATH]

Runs are paired and alternating: each round runs ours and the peer back to back (which
goes first alternates by round) and the pgbench ceiling, for each batch size; enqueue and
latency likewise. Backlog and memory run once at the end, then the cost of metrics and
tracing (``benchmarks.observability``). Prints a table of medians and the
targets, and writes the JSON report (default ``benchmarks/results/latest.json``; ``python
-m benchmarks.plot`` draws it).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import backlog, ceiling, enqueue, latency, memory, observability, peer, throughput
from .common import RESULTS_DIR, base_parser, emit, machine, median

BATCH_SIZES = (10, 100)
LIST_SIZES = (1000, 10000)


def _pair(
    round_no: int, ours: Callable[[], float], theirs: Callable[[], float] | None
) -> tuple[float, float | None]:
    """Run ours and theirs back to back, ours first in even rounds."""
    if theirs is None:
        return ours(), None
    if round_no % 2 == 0:
        a = ours()
        return a, theirs()
    b = theirs()
    return ours(), b


def _drain_ours(dsn: str, jobs: int, size: int) -> float:
    return float(throughput.drain_once(dsn, jobs, size)["jobs_per_s"])


def _drain_peer(interpreter: str, dsn: str, jobs: int, size: int) -> float:
    return float(peer.drain(interpreter, dsn, jobs, size)["jobs_per_s"])


def _enqueue_ours(dsn: str, jobs: int, size: int) -> float:
    return float(enqueue.enqueue_once(dsn, jobs, size)["jobs_per_s"])


def _enqueue_peer(interpreter: str, dsn: str, jobs: int, size: int) -> float:
    return float(peer.enqueue(interpreter, dsn, jobs, size)["jobs_per_s"])


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None or b == 0 else a / b


def evaluate(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Each target: what it asks, the measured value, and whether it is met."""
    drain = {row["batch_size"]: row for row in report["drain"]}
    enq = {row["list_size"]: row for row in report["enqueue"]}
    lat = report["latency"]["ours"]
    targets: list[dict[str, Any]] = []

    def add(name: str, value: float | None, goal: str, met: bool | None) -> None:
        targets.append({"target": name, "value": value, "goal": goal, "met": met})

    for size in BATCH_SIZES:
        row = drain.get(size)
        if row is None:
            continue
        ratio = _ratio(row["ours_median"], row.get("pgqueuer_median"))
        add(
            f"drain batch {size} vs pgqueuer",
            ratio,
            ">= 2.0x",
            None if ratio is None else ratio >= 2,
        )
    row = drain.get(100)
    if row is not None:
        ratio = _ratio(row["ours_median"], row.get("ceiling_median"))
        add("drain batch 100 vs ceiling", ratio, ">= 0.60", None if ratio is None else ratio >= 0.6)
    for size in LIST_SIZES:
        row = enq.get(size)
        if row is None:
            continue
        ratio = _ratio(row["ours_median"], row.get("pgqueuer_median"))
        add(
            f"enqueue lists of {size} vs pgqueuer",
            ratio,
            ">= 3.0x",
            None if ratio is None else ratio >= 3,
        )
    add("pick-up latency p50 (ms)", lat["p50_ms"], "< 3", lat["p50_ms"] < 3)
    add("pick-up latency p99 (ms)", lat["p99_ms"], "< 15", lat["p99_ms"] < 15)
    ratio = report["backlog"].get("ratio")
    add("claim cost 1M / 1k queued", ratio, "<= 1.2", None if ratio is None else ratio <= 1.2)
    rss = report["memory"]["rss_max_mb"]
    add("worker RSS draining (MiB)", rss, "< 80", rss < 80)
    return targets


def _fmt(value: float | None, digits: int = 0) -> str:
    if value is None:
        return "-"
    return f"{value:,.{digits}f}"


def table(report: dict[str, Any]) -> str:
    """The side-by-side table (Markdown)."""
    lines = [
        "| measure | pgqueue-sync | pgqueuer | ours / pgqueuer | SQL ceiling | ours / ceiling |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for row in report["drain"]:
        ours, theirs, ceil = (
            row["ours_median"],
            row.get("pgqueuer_median"),
            row.get("ceiling_median"),
        )
        lines.append(
            f"| drain, batch {row['batch_size']} (jobs/s) | {_fmt(ours)} | {_fmt(theirs)} | "
            f"{_fmt(_ratio(ours, theirs), 2)} | {_fmt(ceil)} | {_fmt(_ratio(ours, ceil), 2)} |"
        )
    for row in report["enqueue"]:
        ours, theirs = row["ours_median"], row.get("pgqueuer_median")
        lines.append(
            f"| enqueue, lists of {row['list_size']} (jobs/s) | {_fmt(ours)} | {_fmt(theirs)} | "
            f"{_fmt(_ratio(ours, theirs), 2)} | | |"
        )
    lat = report["latency"]
    for q in ("p50", "p99"):
        theirs_lat = lat.get("pgqueuer", {}).get(f"{q}_ms")
        lines.append(
            f"| pick-up latency {q} (ms) | {_fmt(lat['ours'][f'{q}_ms'], 2)} | "
            f"{_fmt(theirs_lat, 2)} | | | |"
        )
    for row in report["backlog"]["rows"]:
        lines.append(
            f"| claim cost, {row['backlog']:,} queued (us/job) | {_fmt(row['per_job_us'], 1)} "
            "| | | | |"
        )
    mem = report["memory"]
    lines.append(
        f"| worker RSS draining {mem['jobs']:,} (MiB, max) | {_fmt(mem['rss_max_mb'], 1)} | | | | |"
    )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per drain run")
    args = parser.parse_args()
    quick = args.quick
    dsn = args.dsn
    drain_jobs = args.jobs or (300 if quick else 30_000)
    enqueue_jobs = 2_000 if quick else 100_000
    samples = 10 if quick else 100
    ceiling_seconds = 1.0 if quick else 4.0
    peer_python = peer.python()
    pgbench = ceiling.pgbench_path()
    started = time.time()

    drain_runs: dict[int, dict[str, list[float]]] = {
        b: {"ours": [], "pgqueuer": [], "ceiling": []} for b in BATCH_SIZES
    }
    enqueue_runs: dict[int, dict[str, list[float]]] = {
        s: {"ours": [], "pgqueuer": []} for s in LIST_SIZES
    }
    lat_ours: list[float] = []
    lat_theirs: list[float] = []
    for r in range(args.rounds):
        for size in BATCH_SIZES:
            ours, theirs = _pair(
                r,
                functools.partial(_drain_ours, dsn, drain_jobs, size),
                None
                if peer_python is None
                else functools.partial(_drain_peer, peer_python, dsn, drain_jobs, size),
            )
            drain_runs[size]["ours"].append(ours)
            if theirs is not None:
                drain_runs[size]["pgqueuer"].append(theirs)
            if pgbench is not None:
                drain_runs[size]["ceiling"].append(
                    ceiling.run_once(
                        dsn, size, ceiling_seconds, 4, 2, pgbench, 20_000 if quick else None
                    )["jobs_per_s"]
                )
            print(f"round {r + 1}: drain batch {size}: ours {ours:,.0f}, pgqueuer {_num(theirs)}")
        for size in LIST_SIZES:
            ours, theirs = _pair(
                r,
                functools.partial(_enqueue_ours, dsn, enqueue_jobs, size),
                None
                if peer_python is None
                else functools.partial(_enqueue_peer, peer_python, dsn, enqueue_jobs, size),
            )
            enqueue_runs[size]["ours"].append(ours)
            if theirs is not None:
                enqueue_runs[size]["pgqueuer"].append(theirs)
            print(
                f"round {r + 1}: enqueue lists of {size}: ours {ours:,.0f}, pgqueuer {_num(theirs)}"
            )
        lat_ours += latency.measure(dsn, samples)["latencies_ms"]
        if peer_python is not None:
            lat_theirs += peer.latency(peer_python, dsn, samples)["latencies_ms"]

    report: dict[str, Any] = {
        "bench": "all",
        "machine": machine(),
        "rounds": args.rounds,
        "quick": quick,
        "drain_jobs": drain_jobs,
        "enqueue_jobs": enqueue_jobs,
        "peer": None
        if peer_python is None
        else {"name": "pgqueuer", "version": peer.version(peer_python)},
        "drain": [
            {
                "batch_size": size,
                **{k: v for k, v in runs.items() if v},
                **{f"{k}_median": median(v) for k, v in runs.items() if v},
            }
            for size, runs in drain_runs.items()
        ],
        "enqueue": [
            {
                "list_size": size,
                **{k: v for k, v in runs.items() if v},
                **{f"{k}_median": median(v) for k, v in runs.items() if v},
            }
            for size, runs in enqueue_runs.items()
        ],
        "latency": {"ours": latency.summarize(lat_ours)},
    }
    if lat_theirs:
        report["latency"]["pgqueuer"] = latency.summarize(lat_theirs)
    backlogs = (100, 2_000) if quick else (1_000, 1_000_000)
    rows = [backlog.claim_cost(dsn, b, 20 if quick else 300, 10) for b in backlogs]
    report["backlog"] = {"rows": rows, "ratio": rows[-1]["per_job_us"] / rows[0]["per_job_us"]}
    report["memory"] = memory.drain_memory(dsn, 2_000 if quick else 1_000_000, 100)
    report["observability"] = observability.measure(dsn, drain_jobs, args.rounds)
    report["targets"] = evaluate(report)
    report["seconds"] = time.time() - started
    print()
    print(table(report))
    print()
    print(observability.table(report["observability"]))
    print()
    for t in report["targets"]:
        state = {True: "met", False: "NOT met", None: "n/a"}[t["met"]]
        print(f"{t['target']}: {_fmt(t['value'], 2)} (goal {t['goal']}): {state}")
    path = args.json or str(RESULTS_DIR / ("quick.json" if quick else "latest.json"))
    emit(report, path)
    if path != "-":
        print(f"wrote {Path(path)}")


if __name__ == "__main__":
    main()
