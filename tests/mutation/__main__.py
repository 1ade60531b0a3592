"""The runner of the curated mutants: ``python -m tests.mutation --help``."""

from __future__ import annotations

import argparse
import concurrent.futures
import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from .mutants import CORE, MUTANTS, Mutant

ROOT = Path(__file__).resolve().parents[2]
KILLED, SURVIVED, TIMEOUT, STALE, ERROR = "killed", "survived", "timeout", "stale", "error"


@dataclasses.dataclass
class Result:
    name: str
    status: str
    seconds: float
    detail: str = ""
    equivalent: str = ""


def _files(root: Path) -> list[str]:
    """The repository's files: tracked, and untracked ones not ignored."""
    out = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=root,
        check=True,
        capture_output=True,
    ).stdout
    return [name for name in out.decode().split("\0") if name and (root / name).is_file()]


def make_scratch(tests_rev: str | None) -> Path:
    """A copy of the working tree (with the tests of ``tests_rev`` if given)."""
    scratch = Path(tempfile.mkdtemp(prefix="pgqueue-mutation-"))
    for name in _files(ROOT):
        target = scratch / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / name, target)
    if tests_rev is not None:
        shutil.rmtree(scratch / "tests")
        archive = subprocess.run(
            ["git", "archive", tests_rev, "tests"], cwd=ROOT, check=True, capture_output=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", str(scratch)], input=archive, check=True)
    return scratch


def _environment(scratch: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The scratch copy is imported, by the tests and by every process they start (the
    # `pgq-sync` command, examples, worker processes), never the installed working tree.
    env["PYTHONPATH"] = os.pathsep.join([str(scratch), env.get("PYTHONPATH", "")]).rstrip(
        os.pathsep
    )
    env["PYTHONDONTWRITEBYTECODE"] = "1"  # a mutant of the same size must not reuse a .pyc
    env.setdefault("PGQUEUE_HYPOTHESIS_PROFILE", "ci")
    return env


def _selection(scratch: Path, tests: tuple[str, ...]) -> list[str]:
    """The tests that exist in ``scratch`` (an older suite may lack some): a file or folder,
    or ``file::name`` when the file defines ``name``; the core suite if none is left."""
    kept: list[str] = []
    for item in tests:
        path, _, name = item.partition("::")
        target = scratch / path
        if not target.exists():
            continue
        if name and not re.search(rf"def {re.escape(name.split('[')[0])}\b", target.read_text()):
            continue
        kept.append(item)
    return kept or list(CORE)


def run_tests(scratch: Path, tests: list[str], timeout: float) -> tuple[str, str, float]:
    """Run pytest on ``tests``; (killed / survived / timeout / error, detail, seconds)."""
    args = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    start = time.monotonic()
    proc = subprocess.Popen(
        args,
        cwd=scratch,
        env=_environment(scratch),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return TIMEOUT, f"no verdict in {timeout:.0f} s", time.monotonic() - start
    seconds = time.monotonic() - start
    failed = [line for line in out.splitlines() if line.startswith(("FAILED tests", "ERROR tests"))]
    if proc.returncode == 0:
        return SURVIVED, "", seconds
    if proc.returncode in (1, 2):  # tests failed, or collection/import broke
        return KILLED, (failed[0] if failed else out.strip().splitlines()[-1]), seconds
    return ERROR, out.strip().splitlines()[-1] if out.strip() else "", seconds


def apply(scratch: Path, mutant: Mutant) -> str | None:
    """Apply the mutant's edits in ``scratch``; the reason if a snippet is not found once."""
    for edit in mutant.edits:
        path = scratch / edit.file
        text = path.read_text()
        count = text.count(edit.old)
        if count != 1:
            return f"{edit.file}: snippet found {count} times: {edit.old[:60]!r}"
        path.write_text(text.replace(edit.old, edit.new))
    return None


def restore(scratch: Path, mutant: Mutant) -> None:
    for edit in mutant.edits:
        shutil.copy2(ROOT / edit.file, scratch / edit.file)


class Pool:
    """One scratch copy per parallel job."""

    def __init__(self, jobs: int, tests_rev: str | None) -> None:
        self._free = [make_scratch(tests_rev) for _ in range(jobs)]
        self._lock = threading.Lock()

    def take(self) -> Path:
        with self._lock:
            return self._free.pop()

    def give(self, scratch: Path) -> None:
        with self._lock:
            self._free.append(scratch)

    def remove(self) -> None:
        for scratch in self._free:
            shutil.rmtree(scratch, ignore_errors=True)


def evaluate(pool: Pool, mutant: Mutant, timeout: float, everything: bool) -> Result:
    scratch = pool.take()
    try:
        problem = apply(scratch, mutant)
        if problem is not None:
            return Result(mutant.name, STALE, 0.0, problem, mutant.equivalent)
        if everything:  # the whole core suite, and the fault tests the mutant names
            faults = tuple(t for t in mutant.tests if t.startswith("tests/faults"))
            tests = _selection(scratch, CORE + faults)
        else:
            tests = _selection(scratch, mutant.tests)
        status, detail, seconds = run_tests(scratch, tests, timeout)
        return Result(mutant.name, status, seconds, detail, mutant.equivalent)
    finally:
        restore(scratch, mutant)
        pool.give(scratch)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.mutation", description=__doc__)
    parser.add_argument("--only", action="append", default=[], help="name contains (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("--timeout", type=float, default=240.0, help="seconds per mutant")
    parser.add_argument("--jobs", type=int, default=1, help="mutants run at once")
    parser.add_argument("--tests-rev", help="run against the tests of this git revision")
    parser.add_argument("--json", type=Path, help="write the results here")
    parser.add_argument("--no-sanity", action="store_true", help="skip the unmutated run")
    parser.add_argument(
        "--all-tests",
        action="store_true",
        help="run the whole core suite (and the fault tests a mutant names) for each mutant",
    )
    args = parser.parse_args(argv)

    mutants = [m for m in MUTANTS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        for m in mutants:
            print(f"{m.name}\n    {m.why}")
            for edit in m.edits:
                print(f"    {edit.file}: {edit.old.strip()[:70]!r} -> {edit.new.strip()[:70]!r}")
            print(f"    tests: {' '.join(m.tests)}")
        return 0
    if not mutants:
        print("no mutant matches", file=sys.stderr)
        return 2

    pool = Pool(max(1, args.jobs), args.tests_rev)
    try:
        if not args.no_sanity:
            scratch = pool.take()
            try:
                wanted = [CORE + m.tests if args.all_tests else m.tests for m in mutants]
                selected = sorted({t for tests in wanted for t in _selection(scratch, tests)})
                status, detail, seconds = run_tests(scratch, selected, args.timeout * 4)
            finally:
                pool.give(scratch)
            if status != SURVIVED:
                print(f"the unmutated tests do not pass ({status}: {detail}); fix that first")
                return 2
            print(f"unmutated: {len(selected)} test paths pass ({seconds:.0f} s)", flush=True)
        started = time.monotonic()
        results: list[Result] = []
        with concurrent.futures.ThreadPoolExecutor(max(1, args.jobs)) as executor:
            futures = [
                executor.submit(evaluate, pool, m, args.timeout, args.all_tests) for m in mutants
            ]
            for future in concurrent.futures.as_completed(futures):
                r = future.result()
                results.append(r)
                mark = f"{r.status.upper():8} {r.seconds:6.1f}s  {r.name}"
                note = f"  [equivalent: {r.equivalent}]" if r.equivalent else ""
                print(f"{mark}{note}  {r.detail}"[:220], flush=True)
    finally:
        pool.remove()

    counts = Counter(r.status for r in results)
    equivalent = [r for r in results if r.equivalent and r.status == SURVIVED]
    judged = [
        r for r in results if r.status != STALE and not (r.equivalent and r.status == SURVIVED)
    ]
    caught = sum(1 for r in judged if r.status in (KILLED, TIMEOUT))
    print(
        f"\n{len(results)} mutants in {time.monotonic() - started:.0f} s: "
        + ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
        + f"; {len(equivalent)} of the survivors judged equivalent"
        + (f"; score {caught}/{len(judged)} = {100 * caught / len(judged):.0f}%" if judged else "")
    )
    for r in sorted(results, key=lambda r: r.name):
        if r.status == SURVIVED and not r.equivalent:
            print(f"  survived: {r.name}")
        if r.status == STALE:
            print(f"  stale: {r.name}: {r.detail}")
    if args.json is not None:
        args.json.write_text(json.dumps([dataclasses.asdict(r) for r in results], indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
