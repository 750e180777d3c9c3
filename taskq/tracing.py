"""OpenTelemetry tracing: a PRODUCER span per enqueue, a CONSUMER span per
run, the producer's W3C trace context carried inside the job.

On when the optional ``opentelemetry-api`` package is installed and the
process has a tracer provider; ``tracing=False`` in the app settings turns
it off. Off, an enqueue pays one check and the job carries nothing more.

The context travels in the job's stored per-call options (``o``) under
:data:`TRACE_FIELD`, as the propagator's carrier (``traceparent``, and
``tracestate`` when there is one); the worker takes it out before it reads
the options. Attributes follow the messaging semantic conventions
(``messaging.system`` = ``taskq``, destination = queue, message id = job id).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from . import codec

try:  # an optional extra: taskq[otel]
    from opentelemetry import propagate, trace
    from opentelemetry.trace import NoOpTracerProvider, ProxyTracerProvider, SpanKind, Status, StatusCode
except ImportError:  # pragma: no cover - exercised where the extra is not installed
    trace = None  # type: ignore[assignment]

if TYPE_CHECKING:
    from opentelemetry.trace import Span, Tracer

    from .options import AppSettings
    from .storage.records import EnqueueRequest


class Outcome(Protocol):
    """What :func:`record_outcome` reads of a run's outcome."""

    kind: str
    exc: BaseException | None
    delay_ms: int

TRACE_FIELD = "_trace"
_MARK = codec.dumps(TRACE_FIELD)  # how the field's key looks inside an encoded options map
SYSTEM = "taskq"
_cached: tuple[Any, Tracer] | None = None  # (provider, its tracer)


def tracer(settings: AppSettings) -> Tracer | None:
    """The tracer to use, or None when tracing is off (no extra, no tracer
    provider set, or ``tracing=False``)."""
    global _cached
    if trace is None or not settings.tracing:
        return None
    provider = trace.get_tracer_provider()
    if _cached is not None and _cached[0] is provider:
        return _cached[1]
    if isinstance(provider, (ProxyTracerProvider, NoOpTracerProvider)):
        return None
    _cached = (provider, provider.get_tracer("taskq"))
    return _cached[1]


class Producing:
    """An open PRODUCER span, and the context it puts into jobs."""

    def __init__(self, span: Span, carrier: dict[str, str]) -> None:
        self.span = span
        self.carrier = carrier
        self._blobs: dict[Any, bytes] = {}  # a job's options blob -> the same with the context

    def inject(self, fields: EnqueueRequest) -> EnqueueRequest:
        """One job's fields with the context in its options."""
        opts = fields.options
        blob = self._blobs.get(opts)
        if blob is None:
            stored = codec.loads(opts) if isinstance(opts, bytes) and opts else {}
            blob = self._blobs[opts] = codec.dumps({**stored, TRACE_FIELD: self.carrier})
        return fields._replace(options=blob)

    def enqueued(self, results: Sequence[tuple[str, bool, str]]) -> None:
        """Record what the server answered."""
        if len(results) == 1:
            self.span.set_attribute("messaging.message.id", results[0][0])
            self.span.set_attribute("taskq.job.created", results[0][1])
        else:
            self.span.set_attribute("messaging.batch.message_count", len(results))


class Off:
    """What :func:`enqueue_span` gives when tracing is off: nothing is done."""

    def __enter__(self) -> Off:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def inject(self, fields: EnqueueRequest) -> EnqueueRequest:
        return fields

    def enqueued(self, results: Sequence[tuple[str, bool, str]]) -> None:
        return None


OFF = Off()


def enqueue_span(settings: AppSettings, task: str | None = None,
                 queue: str | None = None) -> contextlib.AbstractContextManager[Producing | Off]:
    """A PRODUCER span around an enqueue (:data:`OFF` when tracing is off);
    its ``inject`` puts the context into each job's fields."""
    t = tracer(settings)
    if t is None:
        return OFF
    return producing(t, task, queue)


@contextlib.contextmanager
def producing(tracer: Tracer, task: str | None, queue: str | None) -> Iterator[Producing]:
    """A PRODUCER span around an enqueue of one job of ``task`` on ``queue``
    (None for a bulk call, whose jobs may go to several)."""
    attributes: dict[str, Any] = {"messaging.system": SYSTEM, "messaging.operation.type": "send",
                                  "messaging.operation.name": "send"}
    if queue is not None:
        attributes["messaging.destination.name"] = queue
    if task is not None:
        attributes["taskq.task"] = task
    name = f"send {queue}" if queue is not None else "send"
    with tracer.start_as_current_span(name, kind=SpanKind.PRODUCER, attributes=attributes) as span:
        carrier: dict[str, str] = {}
        propagate.inject(carrier)
        yield Producing(span, carrier)


def carrier_of(opts: bytes | None) -> dict[str, str] | None:
    """The trace context a job carries in its options blob (None if none)."""
    if not opts or _MARK not in opts:
        return None
    try:
        value = codec.loads(opts).get(TRACE_FIELD)
    except (ValueError, AttributeError):
        return None
    return value if isinstance(value, dict) else None


@contextlib.contextmanager
def consuming(tracer: Tracer, job_id: str, task: str, queue: str, attempt: int,
              carrier: dict[str, str] | None) -> Iterator[Span]:
    """A CONSUMER span around one run of a job, continuing the producer's trace."""
    parent = propagate.extract(carrier) if carrier else None
    attributes: dict[str, Any] = {"messaging.system": SYSTEM, "messaging.operation.type": "process",
                  "messaging.operation.name": "process", "messaging.destination.name": queue,
                  "messaging.message.id": job_id, "taskq.task": task, "taskq.job.attempt": attempt}
    with tracer.start_as_current_span(f"process {queue}", context=parent, kind=SpanKind.CONSUMER,
                                      attributes=attributes) as span:
        yield span


def record_outcome(span: Span, out: Outcome) -> None:
    """What became of the run: a failure's exception and an error status; a
    retry as an event (with its delay) and the exception that caused it."""
    span.set_attribute("taskq.outcome", out.kind)
    if out.kind == "fail":
        if out.exc is not None:
            span.record_exception(out.exc)
        span.set_status(Status(StatusCode.ERROR, f"{type(out.exc).__name__}: {out.exc}" if out.exc else "failed"))
    elif out.kind == "retry":
        if out.exc is not None:
            span.record_exception(out.exc)
        span.add_event("retry", {"taskq.retry.delay_ms": out.delay_ms})
    elif out.kind == "requeue":
        span.add_event("requeue", {"taskq.requeue.delay_ms": out.delay_ms})
