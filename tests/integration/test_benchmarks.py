"""Each benchmark runs with tiny sizes and prints (and writes) valid JSON. No timing is
asserted: the numbers of a test run mean nothing."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from xml.etree import ElementTree

import pytest

from benchmarks import all as bench_all
from benchmarks import common, compare, plot
from tests.pgbouncer.server import pgbouncer_binary

ROOT = Path(__file__).resolve().parents[2]

CASES = {
    "throughput": ["--jobs", "200", "--batch-sizes", "10", "--runs", "1"],
    "throughput_user": ["--jobs", "200", "--batch-sizes", "10", "--runs", "1", "--way", "user"],
    "startup": ["--samples", "1", "--jobs", "50"],
    "latency_load": ["--seconds", "0.3", "--rate", "100"],
    "processes": ["--jobs", "200", "--processes", "1,2"],
    "io_bound": ["--threads", "4", "--sleep", "0.01", "--jobs", "20"],
    "log_growth": ["--log-rows", "0,2000", "--claims", "5", "--backlog", "100"],
    "enqueue": ["--jobs", "600", "--list-sizes", "300", "--runs", "1"],
    "latency": ["--samples", "5", "--gap", "0.005"],
    "backlog": ["--backlogs", "100,1000", "--claims", "5"],
    "memory": ["--jobs", "300"],
    "operations": ["--jobs", "3000", "--log", "3000", "--repeat", "1"],
    "web": ["--jobs", "3000", "--log", "3000", "--repeat", "1"],
    "observability": ["--jobs", "200", "--rounds", "1"],
    "ceiling": ["--batch-sizes", "10", "--seconds", "1", "--jobs", "5000"],
    "cpu": ["--jobs", "200", "--batch-sizes", "10", "--managers", "2"],
    "pgbouncer": [
        "--samples",
        "3",
        "--poll-samples",
        "2",
        "--poll-timeout",
        "0.1",
        "--jobs",
        "200",
        "--runs",
        "1",
        "--claims",
        "20",
    ],
    "techniques": [
        "--pairs",
        "1",
        "--jobs",
        "200",
        "--enqueue-jobs",
        "2000",
        "--only",
        "copy,generic_plan",
    ],
}


def _run(name: str, args: list[str], dsn: str, out: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            f"benchmarks.{_module(name)}",
            "--dsn",
            dsn,
            "--json",
            str(out),
            *args,
        ],
        cwd=ROOT,
        env={**os.environ, "PGQUEUE_BENCH_PEER_PYTHON": "/nonexistent"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    printed = json.loads(lines[-1])
    written: dict[str, Any] = json.loads(out.read_text())
    assert printed == written
    return written


def _module(case: str) -> str:
    """The benchmark a case runs (``throughput_user``: throughput, the user's way)."""
    return "throughput" if case == "throughput_user" else case


@pytest.mark.parametrize("name", sorted(CASES))
def test_benchmark_writes_json(name: str, dsn: str, tmp_path: Path) -> None:
    if name == "pgbouncer" and pgbouncer_binary() is None:
        pytest.skip("pgbouncer is not installed (apt-get install pgbouncer; .ci/run does)")
    result = _run(name, CASES[name], dsn, tmp_path / f"{name}.json")
    assert result["bench"] == _module(name)


def test_report_and_plots(dsn: str, tmp_path: Path) -> None:
    baseline = ["--baseline", "HEAD"] if (ROOT / ".git").exists() else []
    report = _run("all", ["--quick", "--rounds", "1", *baseline], dsn, tmp_path / "all.json")
    assert {t["target"] for t in report["targets"]} >= {
        "pick-up latency p50 (ms)",
        "claim cost 1M / 1k queued",
        "drain batch 10 vs pgqueuer (the user's way)",
        "start-up: ready to claim (ms)",
        "pick-up latency p99 under load (ms)",
        "I/O-bound, 64 threads x 50 ms, share of 1,280/s",
        "claim/complete cost, 1M log rows / none",
        "worker CPU per job, batch 100 (us)",
    }
    if baseline:  # the goals set as times of one day's machine, as ratios to the code at REV
        goals = {
            f"{name}, vs the code the goal was set against": goal
            for name, (_, _, goal, _) in bench_all.BASELINE_GOALS.items()
        }
        judged = {t["target"]: t for t in report["targets"] if t["target"] in goals}
        assert set(judged) == set(goals)
        for name, target in judged.items():
            assert target["value"] > 0
            assert target["met"] is (target["value"] <= goals[name])
    assert [row["batch_size"] for row in report["drain_user"]] == [10, 100]
    assert [row["processes"] for row in report["processes"]["rows"]] == [1, 2]
    for path in plot.draw(report, tmp_path / "img"):
        root = ElementTree.fromstring(path.read_text())  # noqa: S314 - our own output
        assert root.tag == "{http://www.w3.org/2000/svg}svg"


def test_a_baseline_that_names_no_commit_fails_before_the_rounds(dsn: str, tmp_path: Path) -> None:
    if not (ROOT / ".git").exists():
        pytest.skip("--baseline needs a git checkout")
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks.all", "--quick", "--baseline", "no-such-revision"],
        cwd=ROOT,
        env={**os.environ, "PGQUEUE_DSN": dsn},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode != 0
    assert "no-such-revision" in proc.stderr
    assert "round 1" not in proc.stdout  # nothing was measured first


def test_compare_runs_both_revisions(dsn: str, tmp_path: Path) -> None:
    """benchmarks.compare checks each revision out in a worktree of its own (here the same
    commit on both sides) and runs the same benchmark in both, alternating; each number
    found in both results gets a row, and the worktrees are removed afterwards."""
    if not (ROOT / ".git").exists():
        pytest.skip("benchmarks.compare needs a git checkout")
    out = tmp_path / "compare.json"
    scratch = tmp_path / "scratch"  # where compare makes its worktrees (TMPDIR)
    scratch.mkdir()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.compare",
            "HEAD",
            "--head",
            "HEAD",  # both sides in worktrees of their own, of the same commit
            "--pairs",
            "2",
            "--json",
            str(out),
            "--",
            "latency",
            "--dsn",
            dsn,
            "--samples",
            "3",
            "--gap",
            "0.005",
        ],
        cwd=ROOT,
        env={**os.environ, "TMPDIR": str(scratch)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    head = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert (result["bench"], result["base"], result["head"]) == ("compare", head, head)
    rows = {row["key"]: row for row in result["rows"]}
    assert rows["ours.samples"]["base"] == rows["ours.samples"]["head"] == [3.0, 3.0]
    assert len(rows["ours.p50_ms"]["base"]) == 2
    assert "ours.latencies_ms" not in rows  # samples are not compared one by one
    worktrees = subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "list"], capture_output=True, text=True, check=True
    ).stdout
    assert str(scratch) not in worktrees  # removed afterwards, and their directory
    assert list(scratch.iterdir()) == []


def test_compare_flattens_results() -> None:
    result = {
        "bench": "x",
        "ok": True,
        "rows": [{"batch_size": 10, "jobs_per_s": 5.5}, {"batch_size": 100, "jobs_per_s": 7}],
        "ours": {"p50_ms": 1.5, "latencies_ms": [1.0, 2.0]},
    }
    assert compare.flatten(result) == {
        "rows.0.batch_size": 10.0,
        "rows.0.jobs_per_s": 5.5,
        "rows.1.batch_size": 100.0,
        "rows.1.jobs_per_s": 7.0,
        "ours.p50_ms": 1.5,
    }


def test_a_compared_run_refuses_modules_from_another_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Under benchmarks.compare a benchmark reports nothing if part of the package it
    measured came from another checkout (an editable install supplies the modules an older
    revision lacks)."""
    monkeypatch.setenv("PGQUEUE_BENCH_TREE", str(ROOT))
    common.emit({"bench": "x"}, None)  # this tree's own modules: reported
    monkeypatch.setenv("PGQUEUE_BENCH_TREE", str(tmp_path))
    with pytest.raises(RuntimeError, match="measured code from outside"):
        common.emit({"bench": "x"}, None)


def test_a_baseline_that_cannot_run_a_measure_keeps_the_report(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A baseline revision that lacks what a measure needs costs that measure only: the
    failure is recorded, its targets are judged n/a, the rest of the report stands."""
    if not (ROOT / ".git").exists():
        pytest.skip("--baseline needs a git checkout")

    def fails(revision: str, head: str | None, pairs: int, benchmark: list[str]) -> Any:
        raise SystemExit(f"benchmarks.{benchmark[0]} failed: ImportError")

    monkeypatch.setattr(compare, "compare", fails)
    found = bench_all.against_baseline("HEAD", "dsn", 1, True)
    assert found["cpu"] == {"error": "benchmarks.cpu failed: ImportError"}
    assert found["latency"] == {"error": "benchmarks.latency failed: ImportError"}
    judged = [
        target
        for target in bench_all.evaluate(
            {
                "drain": [],
                "enqueue": [],
                "latency": {"ours": {"p50_ms": 1.0, "p99_ms": 2.0}},
                "backlog": {"ratio": 1.0},
                "memory": {"rss_max_mb": 50.0},
                "baseline": found,
            }
        )
        if "vs the code the goal was set against" in target["target"]
    ]
    assert len(judged) == len(bench_all.BASELINE_GOALS)
    assert all(t["value"] is None and t["met"] is None for t in judged)
