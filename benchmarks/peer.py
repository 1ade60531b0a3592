"""The peer queue (pgqueuer), driven in its own virtualenv through ``peer_pgqueuer.py``.

Its interpreter is ``PGQUEUE_BENCH_PEER_PYTHON``, else ``.venv-peer/bin/python`` at the top
of the repository (``benchmarks/setup_peer.sh`` creates it). Without it, the benchmarks
leave the peer column out.
"""

from __future__ import annotations

import json
import os
import subprocess
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


def drain(interpreter: str, dsn: str, jobs: int, batch_size: int) -> dict[str, Any]:
    return _call(
        interpreter, "drain", "--dsn", dsn, "--jobs", str(jobs), "--batch-size", str(batch_size)
    )


def enqueue(interpreter: str, dsn: str, jobs: int, list_size: int) -> dict[str, Any]:
    return _call(
        interpreter, "enqueue", "--dsn", dsn, "--jobs", str(jobs), "--list-size", str(list_size)
    )


def latency(interpreter: str, dsn: str, samples: int) -> dict[str, Any]:
    return _call(interpreter, "latency", "--dsn", dsn, "--samples", str(samples))
