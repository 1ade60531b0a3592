"""Tracing with the AsyncQueueManager: the trace context goes from an awaited enqueue to the
job's span, which is current in the async handler (run on the event loop)."""

from __future__ import annotations

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from pgqueue_sync import Job
from pgqueue_sync.tracing import instrument
from pgqueue_sync_aio import AsyncQueueManager

pytestmark = pytest.mark.anyio


async def test_async_enqueue_and_handler_continue_the_trace(aqm: AsyncQueueManager) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("test")
    instrument(aqm, tracer_provider=provider)

    @aqm.entrypoint("work")
    async def work(job: Job) -> None:
        with tracer.start_as_current_span("inside"):
            pass

    with tracer.start_as_current_span("request"):
        await aqm.queries.enqueue("work", None)
    await aqm.run(mode="drain", workers=1, dequeue_timeout=0.2)
    spans = {s.name: s for s in exporter.get_finished_spans()}
    request, process, inside = spans["request"], spans["process work"], spans["inside"]
    assert request.context is not None
    assert process.context is not None
    assert process.parent is not None
    assert process.parent.span_id == request.context.span_id
    assert inside.parent is not None
    assert inside.parent.span_id == process.context.span_id
