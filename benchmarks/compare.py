"""One benchmark on two revisions of the code, alternating, on the same machine in one run.

    python -m benchmarks.compare BASE [--head REV] [--pairs 3] [--json PATH] \\
        -- BENCHMARK [ARGS...]

    python -m benchmarks.compare f00fdb5 --pairs 3 -- latency --samples 300
    python -m benchmarks.compare f00fdb5 --pairs 1 -- cpu --instructions --batch-sizes 100

A target set on one day's machine cannot be judged by an absolute number on another day's:
this machine's speed changes from one day to the next (docs/benchmarks.md: "Machine and
method"). What a change gave is measured instead against the code before it, on the same
machine in the same hour: each revision is checked out in a git worktree of its own (in a
temporary directory, removed afterwards; ``--head`` defaults to the working tree itself,
uncommitted changes included) and ``python -m benchmarks.BENCHMARK ARGS --json -`` runs in
it, base then head, ``--pairs`` times. Both run the *same* benchmark code, this checkout's
``benchmarks/`` package copied into the base's worktree: what differs is the code measured,
not the measuring. (An older revision must still offer what the benchmark uses; the
benchmark refuses to report a result if any module of the package came from elsewhere,
as an editable install would supply a module the older revision lacks.)

For every number of the benchmark's JSON found in both (nested keys joined with dots, lists
of results by their index; lists of samples are left out) it prints each side's median over
the pairs and head / base. ``--json`` writes every run's value as well.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .common import ROOT, emit

BENCHMARKS = Path(__file__).resolve().parent


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """The numbers of a benchmark's JSON result by path (``rows.0.jobs_per_s``).

    A list of objects is walked by index; a list of numbers (the samples behind a
    percentile, say) is left out, as are strings and booleans.
    """
    found: dict[str, float] = {}
    if isinstance(value, bool):
        return found
    if isinstance(value, int | float):
        found[prefix] = float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            found.update(flatten(item, f"{prefix}.{key}" if prefix else str(key)))
    elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
        for index, item in enumerate(value):
            found.update(flatten(item, f"{prefix}.{index}" if prefix else str(index)))
    return found


def _git(*args: str) -> str:
    proc = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"git {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def resolve(revision: str) -> str:
    """The commit ``revision`` names (SystemExit, saying so, if it names none)."""
    return _git("rev-parse", "--verify", f"{revision}^{{commit}}")


@contextlib.contextmanager
def checkout(commit: str | None, where: Path, side: str) -> Iterator[Path]:
    """A tree of ``commit`` (resolved) measured with this checkout's benchmarks (None: this
    checkout), in ``where``/``side`` (both sides may name the same commit)."""
    if commit is None:
        yield ROOT
        return
    tree = where / f"{side}-{commit[:12]}"
    _git("worktree", "add", "--detach", str(tree), commit)
    try:
        shutil.rmtree(tree / "benchmarks", ignore_errors=True)
        shutil.copytree(
            BENCHMARKS,
            tree / "benchmarks",
            ignore=shutil.ignore_patterns("__pycache__", "results"),
        )
        yield tree
    finally:
        _git("worktree", "remove", "--force", str(tree))


def run_in(tree: Path, benchmark: list[str]) -> dict[str, Any]:
    """Run ``python -m benchmarks.<name> <args> --json -`` in ``tree``; its JSON result."""
    name, *args = benchmark
    proc = subprocess.run(
        [sys.executable, "-m", f"benchmarks.{name}", *args, "--json", "-"],
        cwd=tree,
        env={**os.environ, "PGQUEUE_BENCH_TREE": str(tree)},
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise SystemExit(f"benchmarks.{name} failed in {tree}:\n{proc.stderr.strip()[-3000:]}")
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if not lines:
        raise SystemExit(f"benchmarks.{name} printed no JSON result in {tree}")
    result: dict[str, Any] = json.loads(lines[-1])
    return result


def compare(base: str, head: str | None, pairs: int, benchmark: list[str]) -> dict[str, Any]:
    base_commit = resolve(base)
    head_commit = None if head is None else resolve(head)
    runs: dict[str, list[dict[str, float]]] = {"base": [], "head": []}
    with (
        tempfile.TemporaryDirectory(prefix="pgqueue-compare-") as where,
        checkout(base_commit, Path(where), "base") as base_tree,
        checkout(head_commit, Path(where), "head") as head_tree,
    ):
        for pair in range(pairs):
            for side, tree in (("base", base_tree), ("head", head_tree)):
                runs[side].append(flatten(run_in(tree, benchmark)))
                print(f"pair {pair + 1}/{pairs}: {side} done", file=sys.stderr)
    keys = sorted(set.intersection(*(set(run) for run in runs["base"] + runs["head"])))
    rows = []
    for key in keys:
        base_values = [run[key] for run in runs["base"]]
        head_values = [run[key] for run in runs["head"]]
        base_median = statistics.median(base_values)
        head_median = statistics.median(head_values)
        rows.append(
            {
                "key": key,
                "base": base_values,
                "head": head_values,
                "base_median": base_median,
                "head_median": head_median,
                "ratio": head_median / base_median if base_median else None,
            }
        )
    return {
        "base": base_commit,
        "head": head_commit or "working tree",
        "benchmark": benchmark,
        "pairs": pairs,
        "rows": rows,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0] if __doc__ else "compare",
        usage="python -m benchmarks.compare BASE [--head REV] [--pairs N] -- BENCHMARK [ARGS]",
    )
    parser.add_argument("base", help="the revision measured against (a commit, tag, branch)")
    parser.add_argument("--head", default=None, help="the revision measured (default: this tree)")
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--json", default=None, metavar="PATH")
    argv = sys.argv[1:]
    split = argv.index("--") if "--" in argv else len(argv)
    args = parser.parse_args(argv[:split])
    benchmark = argv[split + 1 :]
    if not benchmark:
        parser.error("name the benchmark to run after --, e.g. -- latency --samples 300")
    if benchmark[0] in ("compare", "all"):
        parser.error(f"benchmarks.{benchmark[0]} cannot be compared this way")
    result = compare(args.base, args.head, args.pairs, benchmark)
    width = max((len(row["key"]) for row in result["rows"]), default=10)
    print(f"{'':{width}}  {'base':>12}  {'head':>12}  head/base")
    for row in result["rows"]:
        ratio = "" if row["ratio"] is None else f"{row['ratio']:.3f}"
        print(
            f"{row['key']:{width}}  {row['base_median']:12.4g}  {row['head_median']:12.4g}  {ratio}"
        )
    emit({"bench": "compare", **result}, args.json)


if __name__ == "__main__":
    main()
