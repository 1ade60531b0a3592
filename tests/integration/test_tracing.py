"""OpenTelemetry traces across the queue, recorded by the SDK's in-memory exporter: a span
around ``enqueue`` in the test's thread is the parent of the job's span, which runs in a
handler thread; spans the handler opens are the job span's children; a failed job's span
has an error status and the exception."""

from __future__ import annotations

import threading

import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from pgqueue_sync import Job, QueueManager
from pgqueue_sync.tracing import ATTEMPT, MESSAGING_SYSTEM, OUTCOME, instrument


@pytest.fixture
def exporter() -> InMemorySpanExporter:
    return InMemorySpanExporter()


@pytest.fixture
def provider(exporter: InMemorySpanExporter) -> TracerProvider:
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return provider


def by_name(spans: tuple[ReadableSpan, ...], name: str) -> list[ReadableSpan]:
    return [s for s in spans if s.name == name]


def parent_id(span: ReadableSpan) -> int | None:
    return None if span.parent is None else span.parent.span_id


def span_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.span_id)


def trace_id(span: ReadableSpan) -> int:
    assert span.context is not None
    return int(span.context.trace_id)


@pytest.mark.parametrize("copy", [False, True], ids=["insert", "copy"])
def test_a_trace_runs_from_enqueue_through_the_queue_into_the_handler(
    qm: QueueManager, provider: TracerProvider, exporter: InMemorySpanExporter, copy: bool
) -> None:
    instrument(qm, tracer_provider=provider)
    tracer = provider.get_tracer("test")
    ran_in: list[str] = []

    @qm.entrypoint("work")
    def work(job: Job) -> None:
        ran_in.append(threading.current_thread().name)
        with tracer.start_as_current_span("inside"):
            pass

    @qm.entrypoint("boom")
    def boom(job: Job) -> None:
        raise ValueError("on purpose")

    if copy:
        qm.queries.copy_threshold = 1
    with tracer.start_as_current_span("request"):
        [job_id, failing] = qm.queries.enqueue(["work", "boom"], [None, None])
    qm.run(mode="drain", workers=2, dequeue_timeout=0.2)

    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "request")
    [process] = by_name(spans, "process work")
    [inside] = by_name(spans, "inside")
    [failed] = by_name(spans, "process boom")
    # The job's span continues the request's trace, from another thread.
    assert parent_id(process) == span_id(request)
    assert trace_id(process) == trace_id(request)
    assert ran_in != [threading.current_thread().name]
    assert ran_in[0].startswith("pgqueue-sync-worker")
    # What the handler opened is the job span's child.
    assert parent_id(inside) == span_id(process)
    assert process.kind is SpanKind.CONSUMER
    assert process.attributes is not None
    assert dict(process.attributes) == {
        "messaging.system": MESSAGING_SYSTEM,
        "messaging.operation.type": "process",
        "messaging.operation.name": "process",
        "messaging.destination.name": "work",
        "messaging.message.id": str(job_id),
        ATTEMPT: 1,
        "pgqueue_sync.job.priority": 0,
        OUTCOME: "successful",
    }
    assert process.status.status_code is StatusCode.UNSET
    # The failed job: its span is an error, with the exception.
    assert parent_id(failed) == span_id(request)
    assert failed.attributes is not None
    assert failed.attributes["messaging.message.id"] == str(failing)
    assert failed.attributes[OUTCOME] == "exception"
    assert failed.status.status_code is StatusCode.ERROR
    [event] = failed.events
    assert event.name == "exception"
    assert event.attributes is not None
    assert event.attributes["exception.type"] == "ValueError"
    assert event.attributes["exception.message"] == "on purpose"


def test_no_trace_context_without_a_current_span(
    qm: QueueManager, provider: TracerProvider
) -> None:
    instrument(qm, tracer_provider=provider)
    [job_id] = qm.queries.enqueue("work", None, headers={"mine": 1})
    [job] = qm.queries.get_jobs([job_id])
    assert job.headers == {"mine": 1}


def test_headers_of_the_caller_are_kept_and_the_context_added(
    qm: QueueManager, provider: TracerProvider
) -> None:
    instrument(qm, tracer_provider=provider)
    with provider.get_tracer("test").start_as_current_span("request") as span:
        [job_id] = qm.queries.enqueue("work", None, headers={"mine": 1})
    [job] = qm.queries.get_jobs([job_id])
    headers = job.headers
    assert headers is not None
    assert headers["mine"] == 1
    ids = span.get_span_context()
    assert headers["traceparent"].startswith(f"00-{ids.trace_id:032x}-{ids.span_id:016x}-")


def test_send_spans_sit_between_the_request_and_the_job(
    qm: QueueManager, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    instrument(qm, tracer_provider=provider, send_spans=True)

    @qm.entrypoint("work")
    def work(job: Job) -> None:
        pass

    with provider.get_tracer("test").start_as_current_span("request"):
        qm.queries.enqueue("work", None)
    qm.run(mode="drain", workers=1, dequeue_timeout=0.2)
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "request")
    [send] = by_name(spans, "send work")
    [process] = by_name(spans, "process work")
    assert send.kind is SpanKind.PRODUCER
    assert parent_id(send) == span_id(request)
    assert parent_id(process) == span_id(send)


def test_a_task_carries_the_trace_too(
    qm: QueueManager, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    instrument(qm, tracer_provider=provider)

    @qm.task()
    def add(a: int, b: int) -> int:
        return a + b

    with provider.get_tracer("test").start_as_current_span("request"):
        add.enqueue(1, 2)
    qm.run(mode="drain", workers=1, dequeue_timeout=0.2)
    spans = exporter.get_finished_spans()
    [request] = by_name(spans, "request")
    [process] = [s for s in spans if s.name.startswith("process ")]
    assert parent_id(process) == span_id(request)


def test_a_handler_past_its_timeout_ends_its_span_as_an_error(
    qm: QueueManager, provider: TracerProvider, exporter: InMemorySpanExporter
) -> None:
    instrument(qm, tracer_provider=provider)
    release = threading.Event()

    @qm.entrypoint("stuck", timeout=0.2)
    def stuck(job: Job) -> None:
        release.wait(30)

    qm.queries.enqueue("stuck", None)
    try:
        qm.run(mode="drain", workers=1, dequeue_timeout=0.2)
        # Ended at the timeout, while its handler still waits.
        [span] = by_name(exporter.get_finished_spans(), "process stuck")
    finally:
        release.set()
    assert span.status.status_code is StatusCode.ERROR
    assert span.attributes is not None
    assert span.attributes[OUTCOME] == "exception"
    assert span.attributes["error.type"] == "JobTimeoutError"
