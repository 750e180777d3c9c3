"""The jobs of one ``enqueue_many`` call: built and sent in chunks, and the
handles of what the server confirmed (shared by the sync and asyncio calls)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from .enqueue import JobBuilder
from .errors import DurabilityUnavailable
from .job import Job, JobApp
from .storage.records import EnqueueRequest

ENQUEUE_CHUNK = 1000
Item = tuple[str, tuple[Any, ...] | list[Any], Mapping[str, Any]]
Result = list[tuple[str, bool, str]]


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

    def send(self) -> list[Result]:
        """Send the chunks in order, each chunk's answers: as a stream (the
        next chunk is built while the server runs the previous one; a durable
        chunk goes alone), or one queue at a time (``queue`` key layout). An
        error midway is raised with ``enqueued``: the handles of the jobs
        enqueued before it, in order."""
        slots, backend = self.app.slots, self.app.backend
        source = self.chunks()
        held: list[list[EnqueueRequest]] = []  # a durable chunk met by the stream

        def plain() -> Iterator[list[EnqueueRequest]]:
            for chunk, durable in source:
                if durable:
                    held.append(chunk)
                    return
                yield chunk

        results: list[Result] = []
        try:
            if slots.per_queue:
                for chunk, durable in source:
                    results.append(per_queue(chunk, self._slot_sender(durable)))
            while not slots.per_queue:
                results.extend(backend.enqueue_stream(plain(), fresh=True))  # builders generate every id
                if not held:
                    break
                results.append(backend.enqueue(held.pop(), durable=True, fresh=True))
        except Exception as exc:
            self._failed(exc, results)
            raise
        return results

    def _slot_sender(self, durable: bool) -> Callable[[str, list[EnqueueRequest]], Result]:
        """Sends one queue's part of a chunk to its slot (``queue`` key layout)."""
        def send(queue: str, jobs: list[EnqueueRequest]) -> Result:
            return self.app.slots.queue(queue).enqueue(jobs, durable=durable, fresh=True)
        return send

    async def asend(self) -> list[Result]:
        """:meth:`send`, awaited (one chunk at a time)."""
        slots = self.app.slots
        results: list[Result] = []
        try:
            for chunk, durable in self.chunks():
                if not slots.per_queue:
                    results.append(await self.app.abackend.enqueue(chunk, durable=durable, fresh=True))
                    continue
                parts = {q: await slots.aqueue(q).enqueue(c, durable=durable, fresh=True)
                         for q, c in by_queue(chunk).items()}
                results.append(per_queue(chunk, lambda q, _jobs, got=parts: got[q]))  # type: ignore[misc]
        except Exception as exc:
            self._failed(exc, results)
            raise
        return results

    def _failed(self, exc: Exception, results: list[Result]) -> None:
        """Give ``exc`` the handles of the jobs enqueued before it (``enqueued``)."""
        if isinstance(exc, DurabilityUnavailable):  # enqueued, only not confirmed on disk
            results.append(getattr(exc, "results", []))
        exc.enqueued = self.handles(results)  # type: ignore[attr-defined]

    def handles(self, results: Iterable[list[tuple[str, bool, str]]]) -> list[Job[Any]]:
        """A handle per ``(id, created, state)`` of the chunks' results, in order."""
        return [Job(self.app, jid, task=b.task if b else None, created=created, state=state,
                    result_timeout=b.options.tombstone_timeout if b else None, queue=self.queues.get(jid))
                for result in results for jid, created, state in result for b in (self.names.get(jid),)]


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
