"""The peer queue (pgqueuer), driven in its own virtualenv through ``peer_pgqueuer.py``.

Its interpreter is ``PGQUEUE_BENCH_PEER_PYTHON``, else ``.venv-peer/bin/python`` at the top
of the repository (``benchmarks/setup_peer.sh`` creates it). Without it, the benchmarks
leave the peer column out.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = Path(__file__).resolve().parent / "peer_pgqueuer.py"


def python() -> str | None:
    """The peer's interpreter if it has pgqueuer, else None."""
    candidate = os.environ.get("PGQUEUE_BENCH_PEER_PYTHON") or str(
        ROOT / ".venv-peer" / "bin" / "python"
    )
    if not Path(candidate).exists():
        return None
    probe = subprocess.run(
        [candidate, "-c", "import pgqueuer, asyncpg"], capture_output=True, check=False
    )
    return candidate if probe.returncode == 0 else None


def require(name: str | None) -> str | None:
    """The peer's interpreter when ``--peer NAME`` was given; if it is missing, say how to
    create it (on stderr) and return None: the benchmark then prints our numbers alone."""
    if name is None:
        return None
    interpreter = python()
    if interpreter is None:
        print(
            f"the peer ({name}) is not installed: run `bash benchmarks/setup_peer.sh` (a "
            "virtualenv in .venv-peer) or set PGQUEUE_BENCH_PEER_PYTHON; printing "
            "pgqueue-sync's numbers only",
            file=sys.stderr,
        )
    return interpreter


def version(interpreter: str) -> str:
    out = subprocess.run(
        [interpreter, "-c", "import importlib.metadata as m; print(m.version('pgqueuer'))"],
        capture_output=True,
        text=True,
        check=True,
    )
    return out.stdout.strip()


def _call(interpreter: str, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [interpreter, str(SCRIPT), *args], capture_output=True, text=True, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"peer benchmark failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def drain(
    interpreter: str, dsn: str, jobs: int, batch_size: int, way: str = "lab"
) -> dict[str, Any]:
    return _call(
        interpreter,
        "drain",
        "--dsn",
        dsn,
        "--jobs",
        str(jobs),
        "--batch-size",
        str(batch_size),
        "--way",
        way,
    )


def enqueue(interpreter: str, dsn: str, jobs: int, list_size: int) -> dict[str, Any]:
    return _call(
        interpreter, "enqueue", "--dsn", dsn, "--jobs", str(jobs), "--list-size", str(list_size)
    )


def latency(interpreter: str, dsn: str, samples: int) -> dict[str, Any]:
    return _call(interpreter, "latency", "--dsn", dsn, "--samples", str(samples))


def startup(interpreter: str, dsn: str, samples: int, jobs: int) -> dict[str, Any]:
    return _call(
        interpreter, "startup", "--dsn", dsn, "--samples", str(samples), "--jobs", str(jobs)
    )


def latency_load(
    interpreter: str, dsn: str, seconds: float, rate: float | None, batch_size: int
) -> dict[str, Any]:
    args = ["--seconds", str(seconds), "--batch-size", str(batch_size)]
    if rate is not None:
        args += ["--rate", str(rate)]
    return _call(interpreter, "latency-load", "--dsn", dsn, *args)


def processes(interpreter: str, dsn: str, jobs: int, count: int, batch_size: int) -> dict[str, Any]:
    return _call(
        interpreter,
        "processes",
        "--dsn",
        dsn,
        "--jobs",
        str(jobs),
        "--processes",
        str(count),
        "--batch-size",
        str(batch_size),
    )
