"""OpenTelemetry across a real worker process: the producer's spans come
from the SDK's in-memory exporter here, the worker's from its own provider
(tests/apps/traced.py writes them to a file)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from opentelemetry.util._once import Once

from taskq import TaskFailed, TaskQ
from tests.apps.traced import build
from tests.conftest import wait_for


def reset_global_provider() -> None:
    """Let a test set the process's tracer provider (OpenTelemetry's own
    tests reset these globals the same way)."""
    trace._TRACER_PROVIDER_SET_ONCE = Once()  # type: ignore[attr-defined]
    trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]


@pytest.fixture
def exporter() -> Iterator[InMemorySpanExporter]:
    """A tracer provider for this process, exporting to memory."""
    reset_global_provider()
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    trace.set_tracer_provider(provider)
    yield memory
    provider.shutdown()
    reset_global_provider()


@pytest.fixture
def spans_file(tmp_path: Path) -> Path:
    return tmp_path / "worker-spans.jsonl"


@pytest.fixture
def traced_worker(start_worker, spans_file: Path) -> Any:
    return lambda: start_worker("tests.apps.traced:app", env={"TASKQ_TEST_SPANS": str(spans_file)})


@pytest.fixture
def tapp(redis_url: str, namespace: str) -> Iterator[TaskQ]:
    app = build(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


def worker_spans(path: Path, n: int) -> list[dict[str, Any]]:
    def read() -> list[dict[str, Any]] | None:
        rows = [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
        return rows if len(rows) >= n else None

    return wait_for(read, 20, what=f"{n} spans from the worker")  # type: ignore[no-any-return]


def test_the_worker_continues_the_producers_trace(tapp, exporter, traced_worker, spans_file):
    traced_worker()
    job = tapp.tasks["add"].delay(2, 3)
    assert job.result(timeout=20) == 5
    (producer,) = exporter.get_finished_spans()
    assert producer.kind == SpanKind.PRODUCER and producer.name == "send default"
    assert dict(producer.attributes or {}) == {
        "messaging.system": "taskq", "messaging.operation.type": "send", "messaging.operation.name": "send",
        "messaging.destination.name": "default", "taskq.task": "add", "messaging.message.id": job.id,
        "taskq.job.created": True}
    inner, consumer = worker_spans(spans_file, 2)
    assert consumer["kind"] == "CONSUMER" and consumer["name"] == "process default"
    assert consumer["trace_id"] == f"{producer.context.trace_id:032x}"
    assert consumer["parent_id"] == f"{producer.context.span_id:016x}"
    assert consumer["attributes"] == {
        "messaging.system": "taskq", "messaging.operation.type": "process", "messaging.operation.name": "process",
        "messaging.destination.name": "default", "messaging.message.id": job.id, "taskq.task": "add",
        "taskq.job.attempt": 1, "taskq.outcome": "ok"}
    assert inner["name"] == "inside add" and inner["parent_id"] == consumer["span_id"]  # the task's own spans nest
    carried = job.info().options["_trace"]["traceparent"]  # W3C: version-trace id-parent id-flags
    assert carried.startswith(f"00-{producer.context.trace_id:032x}-{producer.context.span_id:016x}-")


def test_retries_and_errors_are_recorded_on_the_consumer_spans(tapp, exporter, traced_worker, spans_file):
    traced_worker()
    assert tapp.tasks["flaky"].delay().result(timeout=20) == 2
    with pytest.raises(TaskFailed):
        tapp.tasks["broken"].delay().result(timeout=20)
    first, second, failed = worker_spans(spans_file, 3)
    assert first["attributes"]["taskq.job.attempt"] == 1 and first["attributes"]["taskq.outcome"] == "retry"
    assert [e["name"] for e in first["events"]] == ["exception", "retry"]
    assert first["events"][0]["attributes"]["exception.type"] == "ConnectionError"
    assert second["attributes"]["taskq.job.attempt"] == 2 and second["status"] == "UNSET"
    assert first["trace_id"] == second["trace_id"] and first["parent_id"] == second["parent_id"]  # one send
    assert failed["status"] == "ERROR" and failed["attributes"]["taskq.outcome"] == "fail"
    assert failed["events"][0]["attributes"]["exception.message"] == "always fails"
    producers = exporter.get_finished_spans()
    assert [s.kind for s in producers] == [SpanKind.PRODUCER] * 2
    assert first["parent_id"] == f"{producers[0].context.span_id:016x}"


def test_async_enqueues_and_async_tasks_are_traced_and_bulk_enqueues_share_one_span(
        tapp, exporter, traced_worker, spans_file):
    traced_worker()

    async def main() -> Any:
        job = await tapp.tasks["later"].adelay(21)
        value = await job.aresult(timeout=20)
        jobs = await tapp.tasks["add"].amap([(i, i) for i in range(3)])
        values = [await j.aresult(timeout=20) for j in jobs]
        await tapp.aclose()
        return job.id, value, values

    job_id, value, values = asyncio.run(main())
    assert (value, values) == (42, [0, 2, 4])
    single, bulk = exporter.get_finished_spans()
    assert single.attributes["messaging.message.id"] == job_id
    assert bulk.name == "send" and bulk.attributes["messaging.batch.message_count"] == 3
    rows = worker_spans(spans_file, 2 + 2 * 3)
    consumers = [r for r in rows if r["kind"] == "CONSUMER"]
    assert consumers[0]["parent_id"] == f"{single.context.span_id:016x}"
    assert {c["parent_id"] for c in consumers[1:]} == {f"{bulk.context.span_id:016x}"}
    inner = next(r for r in rows if r["name"] == "inside later")
    assert inner["parent_id"] == consumers[0]["span_id"]  # the async task runs inside the span


def test_tracing_false_or_no_provider_leaves_jobs_without_a_trace_context(
        redis_url, namespace, exporter, tapp):
    off = build(redis_url, namespace, tracing=False)
    try:
        job = off.tasks["add"].delay(1, 1)
        assert exporter.get_finished_spans() == ()
        assert "o" not in off.backend.job_hash(job.id)  # nothing stored: the job is as untraced
    finally:
        off.close()
    reset_global_provider()  # no provider at all: the API's no-op one
    job = tapp.tasks["add"].delay(1, 2)
    assert "o" not in tapp.backend.job_hash(job.id)
    with_option = tapp.tasks["add"].apply_async((1, 3), retry=2)
    assert with_option.info().options == {"retry": 2}
