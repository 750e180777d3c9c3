"""The jobs of one ``enqueue_many`` call: built in chunks, and the handles
of what the server confirmed (shared by the sync and asyncio calls)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .enqueue import JobBuilder
from .job import Job, JobApp
from .storage.records import EnqueueRequest

ENQUEUE_CHUNK = 1000
Item = tuple[str, tuple[Any, ...] | list[Any], Mapping[str, Any]]


class Bulk:
    """``(task_name, args, kwargs)`` items under one call's overrides."""

    def __init__(self, app: JobApp, items: Iterable[Item], call: Mapping[str, Any],
                 inject: Callable[[EnqueueRequest], EnqueueRequest] | None = None) -> None:
        self.app = app
        self.inject = inject  # puts a trace context into a job's fields
        self.items = items
        self.call = call
        self.names: dict[str, JobBuilder] = {}  # job id -> its builder
        self.queues: dict[str, str] = {}  # job id -> its queue
        self.builders: dict[str, JobBuilder] = {}  # with the call's overrides, once per task

    def chunks(self) -> Iterator[tuple[list[EnqueueRequest], bool]]:
        """Chunks of up to 1,000 jobs' fields, each with whether one of its
        jobs is durable (its task's effective options: call > task_flags >
        decorator > task_defaults)."""
        settings = self.app.settings
        chunk: list[EnqueueRequest] = []
        durable = settings.durable
        for task_name, args, kwargs in self.items:
            builder = self.builders.get(task_name)
            if builder is None:
                builder = self.builders[task_name] = JobBuilder(
                    settings, task_name, self.app.options_for(task_name).merged(self.call), self.call)
            fields = self.app.slots.place(builder.build(args, kwargs))
            if self.inject is not None:
                fields = self.inject(fields)
            self.names[fields[0]] = builder
            self.queues[fields[0]] = fields.queue
            chunk.append(fields)
            durable = durable or builder.options.durable
            if len(chunk) >= ENQUEUE_CHUNK:
                yield chunk, durable
                chunk, durable = [], settings.durable
        if chunk:
            yield chunk, durable

    def handles(self, results: Iterable[list[tuple[str, bool, str]]]) -> list[Job[Any]]:
        """A handle per ``(id, created, state)`` of the chunks' results, in order."""
        return [Job(self.app, jid, task=b.task if b else None, created=created, state=state,
                    result_timeout=b.options.tombstone_timeout if b else None, queue=self.queues.get(jid))
                for result in results for jid, created, state in result for b in (self.names.get(jid),)]


Result = list[tuple[str, bool, str]]


def by_queue(chunk: list[EnqueueRequest]) -> dict[str, list[EnqueueRequest]]:
    """A chunk's jobs by queue, each in the chunk's order."""
    out: dict[str, list[EnqueueRequest]] = {}
    for req in chunk:
        out.setdefault(req.queue, []).append(req)
    return out


def per_queue(chunk: list[EnqueueRequest], send: Callable[[str, list[EnqueueRequest]], Result]) -> Result:
    """Send a chunk one queue at a time (``send(queue, jobs)``: the
    ``(id, created, state)`` of each job, in order; ``queue`` key layout):
    the answers in the chunk's order."""
    out: list[tuple[str, bool, str] | None] = [None] * len(chunk)
    places: dict[str, list[int]] = {}
    for i, req in enumerate(chunk):
        places.setdefault(req.queue, []).append(i)
    for queue, jobs in by_queue(chunk).items():
        for i, row in zip(places[queue], send(queue, jobs)):
            out[i] = row
    return [row for row in out if row is not None]
