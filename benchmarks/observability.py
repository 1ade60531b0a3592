"""The cost of observability: drain throughput with metrics and tracing on, against off.

    python -m benchmarks.observability [--jobs 20000] [--rounds 3] [--batch-size 10]
                                       [--workers 4] [--json PATH]

Each round drains the same backlog three times, in a fresh schema each, one variant after
the other (the order rotates by round, so no variant always runs first):

- ``off``: no hooks (the default);
- ``metrics``: ``WorkerMetrics`` in a registry of its own;
- ``metrics+tracing``: the same and ``pgqueue_sync.tracing.instrument`` with the
  OpenTelemetry SDK recording every span (a batch processor, an exporter that drops them).

Every job carries a ``traceparent`` header in every variant, so the tables are the same.
Prints a table of medians and each variant against ``off``, then the JSON line.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import psycopg
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CollectorRegistry

from pgqueue_sync import PsycopgDriver, QueueManager
from pgqueue_sync.metrics import WorkerMetrics
from pgqueue_sync.tracing import instrument

from .common import (
    base_parser,
    emit,
    installed_queue,
    load_jobs,
    median,
    timed_drain,
    vacuum_analyze,
)

VARIANTS = ("off", "metrics", "metrics+tracing")
TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


class _Dropping(SpanExporter):
    """Takes every span and keeps none (the cost of recording, not of shipping)."""

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        return SpanExportResult.SUCCESS


def _setup(variant: str) -> tuple[Callable[[QueueManager], None], Callable[[], None]]:
    """What a variant adds to the manager, and how it cleans up after the run."""
    if variant == "off":
        return (lambda qm: None), (lambda: None)
    provider = TracerProvider()
    provider.add_span_processor(BatchSpanProcessor(_Dropping()))

    def setup(qm: QueueManager) -> None:
        qm.add_hooks(WorkerMetrics(CollectorRegistry()))
        if variant == "metrics+tracing":
            instrument(qm, tracer_provider=provider)

    return setup, provider.shutdown


def drain_once(
    dsn: str, jobs: int, variant: str, batch_size: int = 10, workers: int = 4
) -> dict[str, Any]:
    """Drain ``jobs`` no-op jobs with ``variant``'s observers; jobs/s."""
    setup, cleanup = _setup(variant)
    with installed_queue(dsn, "obs") as (settings, queries):
        load_jobs(queries, jobs, headers={"traceparent": TRACEPARENT})
        vacuum_analyze(dsn, settings)
        with psycopg.connect(dsn, autocommit=True) as conn:
            qm = QueueManager(PsycopgDriver(conn), settings=settings)
            setup(qm)
            seconds = timed_drain(
                qm, jobs, dequeue_timeout=1.0, batch_size=batch_size, workers=workers
            )
    cleanup()
    return {"variant": variant, "seconds": seconds, "jobs_per_s": jobs / seconds}


def measure(
    dsn: str, jobs: int, rounds: int, batch_size: int = 10, workers: int = 4
) -> dict[str, Any]:
    """``rounds`` rounds of every variant, the order rotated by round."""
    runs: dict[str, list[float]] = {v: [] for v in VARIANTS}
    for r in range(rounds):
        order = VARIANTS[r % len(VARIANTS) :] + VARIANTS[: r % len(VARIANTS)]
        for variant in order:
            result = drain_once(dsn, jobs, variant, batch_size, workers)
            runs[variant].append(result["jobs_per_s"])
            print(f"round {r + 1}: {variant}: {result['jobs_per_s']:,.0f} jobs/s", flush=True)
    base = median(runs["off"])
    rows = [
        {
            "variant": v,
            "runs": runs[v],
            "median": median(runs[v]),
            "vs_off": median(runs[v]) / base if base else None,
        }
        for v in VARIANTS
    ]
    return {
        "jobs": jobs,
        "rounds": rounds,
        "batch_size": batch_size,
        "workers": workers,
        "rows": rows,
    }


def table(result: dict[str, Any]) -> str:
    lines = [
        f"drain of {result['jobs']:,} jobs, batch {result['batch_size']}, "
        f"{result['workers']} threads, {result['rounds']} round(s)",
        "",
        "| variant | jobs/s (median) | vs off |",
        "| --- | ---: | ---: |",
    ]
    for row in result["rows"]:
        ratio = "-" if row["vs_off"] is None else f"{row['vs_off']:.3f}"
        lines.append(f"| {row['variant']} | {row['median']:,.0f} | {ratio} |")
    return "\n".join(lines)


def main() -> None:
    parser = base_parser(__doc__.splitlines()[0] if __doc__ else "observability")
    parser.add_argument("--jobs", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--workers", type=int, default=4)
    args = parser.parse_args()
    result = measure(args.dsn, args.jobs, args.rounds, args.batch_size, args.workers)
    print()
    print(table(result))
    print()
    emit({"bench": "observability", **result}, args.json)


if __name__ == "__main__":
    main()
