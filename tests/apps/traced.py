"""A worker app whose process has a tracer provider: finished spans are
written, one JSON object a line, to the file named by TASKQ_TEST_SPANS."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter, SpanExportResult

from taskq import TaskQ, current_job


class FileExporter(SpanExporter):
    """Appends each span to a file (opened per export: safe across fork)."""

    def __init__(self, path: str) -> None:
        self.path = path

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        with open(self.path, "a") as fh:
            for s in spans:
                ctx, parent = s.get_span_context(), s.parent
                fh.write(json.dumps({
                    "name": s.name, "kind": s.kind.name if s.kind else None,
                    "trace_id": f"{ctx.trace_id:032x}" if ctx else None,
                    "span_id": f"{ctx.span_id:016x}" if ctx else None,
                    "parent_id": f"{parent.span_id:016x}" if parent else None,
                    "attributes": dict(s.attributes or {}), "status": s.status.status_code.name,
                    "events": [{"name": e.name, "attributes": dict(e.attributes or {})} for e in s.events],
                }) + "\n")
        return SpanExportResult.SUCCESS


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    app = TaskQ("traced", redis_url, namespace=namespace, **settings)

    @app.task(name="add", tombstone=True)
    def add(a: int, b: int) -> int:
        with trace.get_tracer("tests").start_as_current_span("inside add"):
            return a + b

    @app.task(name="flaky", tombstone=True, retry=1, retry_interval=0)
    def flaky() -> int:
        if current_job().attempt == 1:
            raise ConnectionError("first attempt fails")
        return current_job().attempt

    @app.task(name="broken", tombstone=True)
    def broken() -> None:
        raise ValueError("always fails")

    @app.task(name="later", tombstone=True)
    async def later(x: int) -> int:
        with trace.get_tracer("tests").start_as_current_span("inside later"):
            return x * 2

    return app


if os.environ.get("TASKQ_TEST_SPANS"):
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(FileExporter(os.environ["TASKQ_TEST_SPANS"])))
    trace.set_tracer_provider(provider)

app = build()
