"""Every benchmark, side by side: pgqueue-sync, the peer (pgqueuer) and the SQL ceiling.

    python -m benchmarks.all [--rounds 3] [--quick] [--baseline REV] [--json PATH]

Runs are paired and alternating: each round runs ours and the peer back to back (which
goes first alternates by round) and the pgbench ceiling, for each batch size, both ways of
measuring a drain (``lab``: vacuumed, 4 threads; ``user``: right after the enqueue, run()'s
defaults); enqueue and latency likewise. Start-up, latency under load, the processes
curve, I/O-bound handlers, backlog, log growth, memory, the worker's CPU per job (and,
where valgrind is installed, its instructions per job, which do not depend on the
machine's speed) and the cost of metrics and tracing (``benchmarks.observability``) run
once at the end. The report also holds the machine's calibrations (``machine``: a Python
loop, a round trip, a commit). Prints a table of medians and the targets, and writes the
JSON report (default ``benchmarks/results/latest.json``; ``python -m benchmarks.plot``
draws it).

Three goals were set as absolute times on one day's machine: the worker's CPU per job (17
us to 10), the idle pick-up latency's p50 (2.4 ms to 1.5) and p99 (9.7 ms to 5). Another
day's machine cannot judge them by its own absolute numbers (this one's speed changes from
day to day), so ``--baseline REV`` also measures the code they were set against (REV, in a
worktree of its own: ``benchmarks.compare``), alternating with this tree, ``--rounds``
pairs of the worker's CPU per job (batch 100) and of the idle pick-up latency, and judges
each goal as the ratio it asks for: 10 / 17, 1.5 / 2.4 and 5 / 9.7 of the baseline's
number in the same run.
"""

from __future__ import annotations

import functools
import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from . import (
    backlog,
    ceiling,
    compare,
    cpu,
    enqueue,
    io_bound,
    latency,
    latency_load,
    log_growth,
    memory,
    observability,
    peer,
    processes,
    startup,
    throughput,
)
from .common import RESULTS_DIR, base_parser, emit, machine, median

BATCH_SIZES = (10, 100)
LIST_SIZES = (1000, 10000)

# The goals set as times of one day's machine, as ratios to the code they were set against
# (--baseline): the key of the number in the benchmark's result, the goal and its text.
BASELINE_GOALS = {
    "worker CPU per job, batch 100": ("cpu", "rows.0.worker_us_per_job", 10 / 17, "17 -> 10 us"),
    "pick-up latency p50": ("latency", "ours.p50_ms", 1.5 / 2.4, "2.4 -> 1.5 ms"),
    "pick-up latency p99": ("latency", "ours.p99_ms", 5 / 9.7, "9.7 -> 5 ms"),
}


def against_baseline(revision: str, dsn: str, rounds: int, quick: bool) -> dict[str, Any]:
    """The worker's CPU per job (batch 100) and the idle pick-up latency of the code at
    ``revision`` and of this tree, in alternating pairs (``benchmarks.compare``)."""
    measures = {
        "cpu": [
            "cpu",
            "--dsn",
            dsn,
            "--jobs",
            str(2_000 if quick else 100_000),
            "--batch-sizes",
            "100",
        ],
        "latency": ["latency", "--dsn", dsn, "--samples", str(10 if quick else 300)],
    }
    found: dict[str, Any] = {"revision": compare.resolve(revision)}
    for name, args in measures.items():
        try:
            found[name] = compare.compare(revision, None, rounds, args)
        except SystemExit as exc:  # the revision cannot run it: the report keeps the rest
            found[name] = {"error": str(exc)}
            print(f"baseline {name}: {exc}")
    return found


def _baseline_row(report: dict[str, Any], measure: str, key: str) -> dict[str, Any] | None:
    found = report.get("baseline", {}).get(measure, {}).get("rows", [])
    return next((row for row in found if row["key"] == key), None)


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


def _drain_ours(dsn: str, jobs: int, size: int, way: str = "lab") -> float:
    return float(throughput.drain_once(dsn, jobs, size, way=way)["jobs_per_s"])


def _drain_peer(interpreter: str, dsn: str, jobs: int, size: int, way: str = "lab") -> float:
    return float(peer.drain(interpreter, dsn, jobs, size, way=way)["jobs_per_s"])


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

    user = {row["batch_size"]: row for row in report.get("drain_user", [])}
    for size in BATCH_SIZES:
        for way, rows in (("", drain), (" (the user's way)", user)):
            row = rows.get(size)
            if row is None:
                continue
            ratio = _ratio(row["ours_median"], row.get("pgqueuer_median"))
            add(
                f"drain batch {size} vs pgqueuer{way}",
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
        # Every round, not only the median: the worst round's ratio.
        pairs = list(zip(row["ours"], row.get("pgqueuer", []), strict=False))
        worst = min((a / b for a, b in pairs if b), default=None)
        add(
            f"enqueue lists of {size} vs pgqueuer (worst round)",
            worst,
            ">= 3.5x",
            None if worst is None else worst >= 3.5,
        )
    add("pick-up latency p50 (ms)", lat["p50_ms"], "<= 1.5", lat["p50_ms"] <= 1.5)
    add("pick-up latency p99 (ms)", lat["p99_ms"], "<= 5", lat["p99_ms"] <= 5)
    load = report.get("latency_load", {}).get("ours")
    if load is not None:
        add("pick-up latency p99 under load (ms)", load["p99_ms"], "<= 20", load["p99_ms"] <= 20)
    start = report.get("startup", {}).get("ours")
    if start is not None:
        add("start-up: ready to claim (ms)", start["ready_ms"], "<= 50", start["ready_ms"] <= 50)
        add(
            "drain tail: last tenth per job / middle",
            start["last_us"] / start["middle_us"],
            "<= 1.0 (as fast)",
            None,
        )
    cpu_row = report.get("cpu")
    if cpu_row is not None:
        us = cpu_row["worker_us_per_job"]
        add("worker CPU per job, batch 100 (us)", us, "<= 10", us <= 10)
    counted = report.get("cpu_instructions")
    if counted is not None:
        add(
            "worker instructions per job, batch 100 (the same on any machine)",
            counted["instructions_per_job"],
            "fewer",
            None,
        )
    io = report.get("io_bound")
    if io is not None:
        share = io["share_of_ideal"]
        add("I/O-bound, 64 threads x 50 ms, share of 1,280/s", share, ">= 0.9", share >= 0.9)
    logs = report.get("log_growth")
    if logs is not None and "claim_ratio" in logs:
        worst_log = max(logs["claim_ratio"], logs["complete_ratio"])
        add("claim/complete cost, 1M log rows / none", worst_log, "<= 1.2", worst_log <= 1.2)
    ratio = report["backlog"].get("ratio")
    add("claim cost 1M / 1k queued", ratio, "<= 1.2", None if ratio is None else ratio <= 1.2)
    rss = report["memory"]["rss_max_mb"]
    add("worker RSS draining (MiB)", rss, "< 80", rss < 80)
    for name, (measure, key, goal, text) in BASELINE_GOALS.items():
        if "baseline" not in report:
            break
        row = _baseline_row(report, measure, key)
        ratio = None if row is None else row["ratio"]
        add(
            f"{name}, vs the code the goal was set against",
            ratio,
            f"<= {goal:.2f} ({text})",
            None if ratio is None else ratio <= goal,
        )
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
    for row in report.get("drain_user", []):
        ours, theirs = row["ours_median"], row.get("pgqueuer_median")
        lines.append(
            f"| drain, batch {row['batch_size']}, the user's way (jobs/s) | {_fmt(ours)} | "
            f"{_fmt(theirs)} | {_fmt(_ratio(ours, theirs), 2)} | | |"
        )
    for row in report["enqueue"]:
        ours, theirs = row["ours_median"], row.get("pgqueuer_median")
        lines.append(
            f"| enqueue, lists of {row['list_size']} (jobs/s) | {_fmt(ours)} | {_fmt(theirs)} | "
            f"{_fmt(_ratio(ours, theirs), 2)} | | |"
        )
    lat = report["latency"]
    labels = {
        "p50": "pick-up latency p50",
        "p99": "pick-up latency p99",
        "enqueue_p50": "the producer's enqueue call in it, p50",
        "after_call_p50": "from the call's return to the handler, p50",
    }
    for q, label in labels.items():
        theirs_lat = lat.get("pgqueuer", {}).get(f"{q}_ms")
        lines.append(
            f"| {label} (ms) | {_fmt(lat['ours'].get(f'{q}_ms'), 2)} | "
            f"{_fmt(theirs_lat, 2)} | | | |"
        )
    for row in report["backlog"]["rows"]:
        lines.append(
            f"| claim cost, {row['backlog']:,} queued (us/job) | {_fmt(row['per_job_us'], 1)} "
            "| | | | |"
        )
    load = report.get("latency_load")
    if load is not None:
        theirs_load = load.get("pgqueuer", {})
        lines.append(
            f"| pick-up latency p99 under load (ms) | {_fmt(load['ours']['p99_ms'], 2)} | "
            f"{_fmt(theirs_load.get('p99_ms'), 2)} | | | |"
        )
    start = report.get("startup")
    if start is not None:
        theirs_start = start.get("pgqueuer", {})
        lines.append(
            f"| start-up: ready to claim (ms) | {_fmt(start['ours']['ready_ms'], 1)} | | | | |"
        )
        lines.append(
            f"| start-up: first job started (ms) | {_fmt(start['ours']['first_job_ms'], 1)} | "
            f"{_fmt(theirs_start.get('first_job_ms'), 1)} | | | |"
        )
        lines.append(
            f"| drain tail: last job done to return (ms) | {_fmt(start['ours']['tail_ms'], 1)} | "
            f"{_fmt(theirs_start.get('tail_ms'), 1)} | | | |"
        )
    for row in report.get("processes", {}).get("rows", []):
        ours, theirs = row["ours"]["jobs_per_s"], row.get("pgqueuer", {}).get("jobs_per_s")
        lines.append(
            f"| drain, batch 100, {row['processes']} process(es) (jobs/s) | {_fmt(ours)} | "
            f"{_fmt(theirs)} | {_fmt(_ratio(ours, theirs), 2)} | | |"
        )
    io = report.get("io_bound")
    if io is not None:
        lines.append(
            f"| I/O-bound, {io['threads']} threads x {io['sleep_s'] * 1000:.0f} ms (jobs/s) | "
            f"{_fmt(io['jobs_per_s'])} | | | | |"
        )
        lines.append(
            f"| memory per handler thread (KiB, at most) | {_fmt(io['per_thread_kib'])} | | | | |"
        )
    for row in report.get("log_growth", {}).get("rows", []):
        lines.append(
            f"| claim / completion, {row['log_rows']:,} log rows (us/job) | "
            f"{_fmt(row['claim_us'], 1)} / {_fmt(row['complete_us'], 1)} | | | | |"
        )
    cpu_row = report.get("cpu")
    if cpu_row is not None:
        lines.append(
            f"| worker CPU per job, batch 100 (us) | {_fmt(cpu_row['worker_us_per_job'], 1)} "
            "| | | | |"
        )
    counted = report.get("cpu_instructions")
    if counted is not None:
        lines.append(
            "| worker instructions per job, batch 100 | "
            f"{_fmt(counted['instructions_per_job'])} | | | | |"
        )
    mem = report["memory"]
    lines.append(
        f"| worker RSS draining {mem['jobs']:,} (MiB, max) | {_fmt(mem['rss_max_mb'], 1)} | | | | |"
    )
    if "baseline" in report:
        # Reports written before "revision" was recorded name the baseline per measure.
        baseline = report["baseline"]
        revision = str(baseline.get("revision") or baseline["cpu"].get("base", "?"))[:7]
        for name, (measure, key, _, _) in BASELINE_GOALS.items():
            row = _baseline_row(report, measure, key)
            if row is not None:
                unit = "us" if measure == "cpu" else "ms"
                lines.append(
                    f"| {name} ({unit}): the code at {revision} / this code, alternating | "
                    f"{_fmt(row['base_median'], 2)} / {_fmt(row['head_median'], 2)} | | | | |"
                )
    return "\n".join(lines)


def _num(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f}"


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "all")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="tiny sizes (a smoke test)")
    parser.add_argument("--jobs", type=int, default=None, help="jobs per drain run")
    parser.add_argument(
        "--baseline",
        default=None,
        metavar="REV",
        help="also measure the code at REV, alternating with this tree, and judge the goals "
        "set as times of one day's machine as ratios to it (f00fdb5: the code they were "
        "set against)",
    )
    args = parser.parse_args()
    if args.baseline is not None:
        compare.resolve(args.baseline)  # a revision that names no commit fails now, not at the end
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
    user_runs: dict[int, dict[str, list[float]]] = {
        b: {"ours": [], "pgqueuer": []} for b in BATCH_SIZES
    }
    user_jobs = 300 if quick else 20_000
    enqueue_runs: dict[int, dict[str, list[float]]] = {
        s: {"ours": [], "pgqueuer": []} for s in LIST_SIZES
    }
    lat_ours: list[float] = []
    lat_theirs: list[float] = []
    enq_ours: list[float] = []  # the producer's enqueue call in each latency sample
    enq_theirs: list[float] = []
    after_ours: list[float] = []  # each sample less its enqueue call: the worker's part
    after_theirs: list[float] = []
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
            ours, theirs = _pair(
                r,
                functools.partial(_drain_ours, dsn, user_jobs, size, "user"),
                None
                if peer_python is None
                else functools.partial(_drain_peer, peer_python, dsn, user_jobs, size, "user"),
            )
            user_runs[size]["ours"].append(ours)
            if theirs is not None:
                user_runs[size]["pgqueuer"].append(theirs)
            print(
                f"round {r + 1}: drain batch {size}, the user's way: ours {ours:,.0f}, "
                f"pgqueuer {_num(theirs)}"
            )
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
        sampled = latency.measure(dsn, samples)
        lat_ours += sampled["latencies_ms"]
        enq_ours += sampled["enqueue_ms"]
        after_ours += sampled["after_call_ms"]
        if peer_python is not None:
            sampled = peer.latency(peer_python, dsn, samples)
            lat_theirs += sampled["latencies_ms"]
            enq_theirs += sampled.get("enqueue_ms", [])
            after_theirs += sampled.get("after_call_ms", [])

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
        "drain_user_jobs": user_jobs,
        "drain_user": [
            {
                "batch_size": size,
                **{k: v for k, v in runs.items() if v},
                **{f"{k}_median": median(v) for k, v in runs.items() if v},
            }
            for size, runs in user_runs.items()
        ],
        "enqueue": [
            {
                "list_size": size,
                **{k: v for k, v in runs.items() if v},
                **{f"{k}_median": median(v) for k, v in runs.items() if v},
            }
            for size, runs in enqueue_runs.items()
        ],
        "latency": {"ours": latency.summarize(lat_ours, enq_ours, after_ours)},
    }
    if lat_theirs:
        report["latency"]["pgqueuer"] = latency.summarize(lat_theirs, enq_theirs, after_theirs)
    backlogs = (100, 2_000) if quick else (1_000, 1_000_000)
    rows = [backlog.claim_cost(dsn, b, 20 if quick else 300, 10) for b in backlogs]
    report["backlog"] = {"rows": rows, "ratio": rows[-1]["per_job_us"] / rows[0]["per_job_us"]}
    report["memory"] = memory.drain_memory(dsn, 2_000 if quick else 1_000_000, 100)
    report["startup"] = {"ours": startup.measure(dsn, 2 if quick else 20, 300 if quick else 2000)}
    report["latency_load"] = {
        "ours": latency_load.measure(dsn, 0.5 if quick else 5.0, 200.0 if quick else None)
    }
    if peer_python is not None:
        report["startup"]["pgqueuer"] = peer.startup(
            peer_python, dsn, 2 if quick else 20, 300 if quick else 2000
        )
        report["latency_load"]["pgqueuer"] = peer.latency_load(
            peer_python, dsn, 0.5 if quick else 5.0, 200.0 if quick else None, 10
        )
    proc_rows = []
    for n in (1, 2) if quick else (1, 2, 4):
        jobs_n = 300 if quick else 40_000
        proc_row: dict[str, Any] = {"processes": n, "ours": processes.drain(dsn, jobs_n, n, 100)}
        if peer_python is not None:
            proc_row["pgqueuer"] = peer.processes(peer_python, dsn, jobs_n, n, 100)
        proc_rows.append(proc_row)
    report["processes"] = {"rows": proc_rows}
    report["io_bound"] = (
        io_bound.measure(dsn, 8, 0.01, 80, 10)
        if quick
        else io_bound.measure(dsn, 64, 0.05, 6400, 10)
    )
    log_rows = [
        log_growth.cost(dsn, n, 10 if quick else 300, 10, 100 if quick else 1000)
        for n in ((0, 2_000) if quick else (0, 1_000_000))
    ]
    report["log_growth"] = {
        "rows": log_rows,
        "claim_ratio": log_rows[-1]["claim_us"] / log_rows[0]["claim_us"],
        "complete_ratio": log_rows[-1]["complete_us"] / log_rows[0]["complete_us"],
    }
    report["cpu"] = cpu.drain_cpu(dsn, 2_000 if quick else 100_000, 100, 4)
    if not quick and shutil.which("valgrind") is not None:
        # CPU time per job follows the machine's speed; instructions per job do not.
        report["cpu_instructions"] = cpu.instructions_per_job(dsn, 20_000, 100, 4)
    report["observability"] = observability.measure(dsn, drain_jobs, args.rounds)
    if args.baseline is not None:
        report["baseline"] = against_baseline(args.baseline, dsn, args.rounds, quick)
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
