"""OpenTelemetry traces across the queue (the ``otel`` extra: opentelemetry-api).

    from pgqueue_sync.tracing import instrument
    instrument(qm)          # a QueueManager or an AsyncQueueManager

Producers: every ``qm.queries.enqueue`` (tasks and the async API too) writes the current
trace context into each job's headers (W3C ``traceparent``/``tracestate``, through the
globally configured propagator); with ``send_spans=True`` it also opens a PRODUCER span
``send <entrypoint>`` around the insert, whose context is the one written. Workers: each job
runs in a CONSUMER span ``process <entrypoint>``, a child of the context found in its
headers, current in the handler's thread while it runs (spans the handler opens are its
children). The attributes follow OpenTelemetry's messaging conventions; see
docs/observability.md.

Nothing of this runs, and nothing of OpenTelemetry is imported, unless ``instrument`` is
called (this module imports opentelemetry).
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from opentelemetry import context as otel_context
from opentelemetry import propagate, trace
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from ._version import __version__
from .admin_models import last_line
from .engine.hooks import WorkerHooks
from .enqueue import EnqueueHooks
from .models import Job, JobStatus, Outcome

if TYPE_CHECKING:
    from pgqueue_sync_aio import AsyncQueueManager

    from .qm import QueueManager

__all__ = [
    "ATTEMPT",
    "MESSAGING_SYSTEM",
    "OUTCOME",
    "TracingEnqueueHooks",
    "TracingHooks",
    "instrument",
]

# messaging.system names the messaging product (kafka, rabbitmq, ...): here pgqueue-sync,
# whose protocol (tables, claims, fenced outcomes) the spans describe; the database spans of
# the same trace (psycopg's instrumentation) say db.system.name = "postgresql".
MESSAGING_SYSTEM = "pgqueue_sync"
# Attributes of our own, outside the conventions' namespaces.
ATTEMPT = "pgqueue_sync.job.attempt"
OUTCOME = "pgqueue_sync.job.outcome"
PRIORITY = "pgqueue_sync.job.priority"

_FAILED = (JobStatus.EXCEPTION, JobStatus.FAILED, JobStatus.QUEUED)


def _outcome(status: JobStatus) -> str:
    return "retried" if status is JobStatus.QUEUED else status.value


def _tracer(provider: TracerProvider | None) -> trace.Tracer:
    return trace.get_tracer("pgqueue_sync", __version__, tracer_provider=provider)


class TracingHooks(WorkerHooks):
    """The worker's side: a CONSUMER span per job, current in its handler thread."""

    def __init__(self, tracer_provider: TracerProvider | None = None) -> None:
        self.tracer = _tracer(tracer_provider)
        self._lock = threading.Lock()
        self._spans: dict[tuple[int, int], Span] = {}

    def job_scope(self, job: Job) -> contextlib.AbstractContextManager[None]:
        return self._scope(job)

    @contextlib.contextmanager
    def _scope(self, job: Job) -> Iterator[None]:
        parent = _extract(job.headers)
        span = self.tracer.start_span(
            f"process {job.entrypoint}",
            context=parent,
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": MESSAGING_SYSTEM,
                "messaging.operation.type": "process",
                "messaging.operation.name": "process",
                "messaging.destination.name": job.entrypoint,
                "messaging.message.id": str(job.id),
                ATTEMPT: job.attempts,
                PRIORITY: job.priority,
            },
        )
        key = (job.id, job.attempts)
        with self._lock:
            self._spans[key] = span
        token = otel_context.attach(trace.set_span_in_context(span, parent))
        try:
            yield
        finally:
            otel_context.detach(token)
            with self._lock:
                open_span = self._spans.pop(key, None)
            if open_span is not None:
                open_span.end()

    def job_finished(self, job: Job, outcome: Outcome) -> None:
        with self._lock:
            span = self._spans.get((job.id, job.attempts))
        if span is not None:
            _record(span, outcome)

    def job_timed_out(self, job: Job, outcome: Outcome) -> None:
        # The handler's thread is abandoned: the span ends now, with the timeout.
        with self._lock:
            span = self._spans.pop((job.id, job.attempts), None)
        if span is not None:
            _record(span, outcome)
            span.end()


def _extract(headers: Mapping[str, Any] | None) -> otel_context.Context | None:
    """The context carried in a job's headers (None: none)."""
    if not headers:
        return None
    fields = propagate.get_global_textmap().fields
    carrier = {k: v for k in fields if isinstance(v := headers.get(k), str)}
    return propagate.extract(carrier) if carrier else None


def _record(span: Span, outcome: Outcome) -> None:
    span.set_attribute(OUTCOME, _outcome(outcome.status))
    if outcome.status not in _FAILED:
        return
    error = last_line(outcome.traceback) or outcome.status.value
    kind, _, message = error.partition(": ")
    span.set_attribute("error.type", kind)
    span.add_event(
        "exception",
        {
            "exception.type": kind,
            "exception.message": message,
            "exception.stacktrace": outcome.traceback or "",
        },
    )
    span.set_status(Status(StatusCode.ERROR, error))


class TracingEnqueueHooks(EnqueueHooks):
    """The producer's side: the current trace context into the jobs' headers, and with
    ``send_spans`` a PRODUCER span around the enqueue."""

    def __init__(
        self, tracer_provider: TracerProvider | None = None, *, send_spans: bool = False
    ) -> None:
        self.tracer = _tracer(tracer_provider)
        self.send_spans = send_spans

    def enqueuing(
        self, entrypoints: Sequence[str]
    ) -> contextlib.AbstractContextManager[Mapping[str, Any] | None]:
        return self._send(entrypoints) if self.send_spans else self._inject()

    @contextlib.contextmanager
    def _inject(self) -> Iterator[Mapping[str, Any] | None]:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield carrier or None

    @contextlib.contextmanager
    def _send(self, entrypoints: Sequence[str]) -> Iterator[Mapping[str, Any] | None]:
        names = sorted(set(entrypoints))
        attributes: dict[str, Any] = {
            "messaging.system": MESSAGING_SYSTEM,
            "messaging.operation.type": "send",
            "messaging.operation.name": "send",
        }
        if len(names) == 1:
            attributes["messaging.destination.name"] = names[0]
        if len(entrypoints) > 1:
            attributes["messaging.batch.message_count"] = len(entrypoints)
        name = f"send {names[0]}" if len(names) == 1 else "send"
        with self.tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes):
            carrier: dict[str, str] = {}
            propagate.inject(carrier)
            yield carrier


def instrument(
    qm: QueueManager | AsyncQueueManager,
    *,
    tracer_provider: TracerProvider | None = None,
    send_spans: bool = False,
) -> TracingHooks:
    """Trace ``qm``'s jobs from enqueue to handler (see the module docstring): its
    producers carry the trace context in the jobs' headers, its workers run each job in a
    span that continues it. ``tracer_provider``: default, the global one. Returns the
    worker's hooks."""
    hooks = TracingHooks(tracer_provider)
    qm.add_hooks(hooks)
    qm.queries.add_enqueue_hooks(TracingEnqueueHooks(tracer_provider, send_spans=send_spans))
    return hooks
