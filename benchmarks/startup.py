"""Start-up and tail: how long ``run()`` takes to be ready, and to return after the last job.

    python -m benchmarks.startup [--samples 20] [--jobs 2000] [--batch-size 10]
                                 [--peer pgqueuer] [--json PATH]

On one installed queue, each sample enqueues ``--jobs`` no-op jobs and calls
``qm.run(batch_size=..., mode="drain")`` with the defaults otherwise, on a driver that opens
the worker's connections itself (``PsycopgDriver(dsn)``), and reads, from the call:

- ``ready_ms``: until the worker is ready to claim (its connections open, the schema
  checked, its threads started: the ``worker_started`` hook);
- ``first_claim_ms``: until the first claim returned; ``first_job_ms``: until the first
  handler started;
- ``tail_ms``: from the end of the last handler to ``run()``'s return;
- ``middle_us`` and ``last_us``: the time per job between the handler ends of the middle
  half of the jobs, and of the last tenth (a drain's tail as fast as its middle: equal).

The first sample is reported apart (``cold``): the queue table was never analyzed then.
The medians are of the others. With ``--peer pgqueuer`` the peer does the same (first
handler start and tail; it has no hook for the others).
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Sequence
from typing import Any

from pgqueue_sync import Job, PsycopgDriver, QueueManager
from pgqueue_sync.engine import Worker
from pgqueue_sync.engine.hooks import WorkerHooks

from . import peer
from .common import ENTRYPOINT, base_parser, emit, installed_queue, load_jobs, percentile


class _Marks(WorkerHooks):
    def __init__(self) -> None:
        self.ready: float | None = None
        self.first_claim: float | None = None

    def worker_started(self, worker: Worker) -> None:
        self.ready = time.perf_counter()

    def claimed(self, jobs: Sequence[Job]) -> None:
        if self.first_claim is None and jobs:
            self.first_claim = time.perf_counter()


def _per_job_us(ends: list[float], lo: float, hi: float) -> float:
    a, b = int(len(ends) * lo), max(int(len(ends) * hi) - 1, int(len(ends) * lo) + 1)
    b = min(b, len(ends) - 1)
    return 1e6 * (ends[b] - ends[a]) / max(1, b - a)


def sample(dsn: str, queries: Any, settings: Any, jobs: int, batch_size: int) -> dict[str, float]:
    load_jobs(queries, jobs)
    qm = QueueManager(PsycopgDriver(dsn), settings=settings)
    marks = _Marks()
    qm.add_hooks(marks)
    starts: list[float] = []
    ends: list[float] = []

    @qm.entrypoint(ENTRYPOINT)
    def noop(job: Job) -> None:
        if not starts:
            starts.append(time.perf_counter())
        ends.append(time.perf_counter())  # list.append is atomic: no lock needed

    started = time.perf_counter()
    qm.run(batch_size=batch_size, mode="drain")
    returned = time.perf_counter()
    if len(ends) != jobs or marks.ready is None or marks.first_claim is None:
        raise RuntimeError(f"drained {len(ends)} of {jobs} jobs")
    ends.sort()
    return {
        "ready_ms": (marks.ready - started) * 1000,
        "first_claim_ms": (marks.first_claim - started) * 1000,
        "first_job_ms": (starts[0] - started) * 1000,
        "tail_ms": (returned - ends[-1]) * 1000,
        "middle_us": _per_job_us(ends, 0.25, 0.75),
        "last_us": _per_job_us(ends, 0.9, 1.0),
    }


def measure(dsn: str, samples: int, jobs: int, batch_size: int = 10) -> dict[str, Any]:
    with installed_queue(dsn, "startup") as (settings, queries):
        rows = [sample(dsn, queries, settings, jobs, batch_size) for _ in range(samples + 1)]
    cold, warm = rows[0], rows[1:]
    result: dict[str, Any] = {"samples": len(warm), "jobs": jobs, "cold": cold}
    for key in cold:
        values = [row[key] for row in warm]
        result[key] = statistics.median(values)
        result[f"{key}_p90"] = percentile(values, 90)
    return result


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "startup")
    parser.add_argument("--samples", type=int, default=20)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--peer", choices=["pgqueuer"], default=None)
    args = parser.parse_args()
    peer_python = peer.require(args.peer)
    ours = measure(args.dsn, args.samples, args.jobs, args.batch_size)
    print(
        f"pgqueue-sync: ready {ours['ready_ms']:.1f} ms, first claim "
        f"{ours['first_claim_ms']:.1f} ms, first job {ours['first_job_ms']:.1f} ms, tail "
        f"{ours['tail_ms']:.1f} ms; per job middle {ours['middle_us']:.0f} us, last tenth "
        f"{ours['last_us']:.0f} us (cold: ready {ours['cold']['ready_ms']:.1f} ms)"
    )
    result: dict[str, Any] = {"bench": "startup", "batch_size": args.batch_size, "ours": ours}
    if peer_python is not None:
        theirs = peer.startup(peer_python, args.dsn, args.samples, args.jobs)
        print(
            f"pgqueuer: first job {theirs['first_job_ms']:.1f} ms, tail {theirs['tail_ms']:.1f} ms"
        )
        result["pgqueuer"] = theirs
    emit(result, args.json)


if __name__ == "__main__":
    main()
