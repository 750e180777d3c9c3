"""``TaskQ``: an app, with its registry of tasks (``registry.py``), its
storage and the producer API."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Iterable, Mapping
from functools import cached_property
from typing import Any

from .bulk import ENQUEUE_CHUNK, Bulk, Item  # noqa: F401 - ENQUEUE_CHUNK re-exported
from .canvas import Canvas, Signature
from .control import JobControl
from .embedded import ensure_embedded_server
from .enqueue import JobBuilder
from .events import EventListener
from .flowplan import enqueue_dependent, launch
from .job import Job
from .options import load_settings
from .registry import HOOK_EVENTS, Registry  # noqa: F401 - HOOK_EVENTS re-exported
from .slots import Slots
from .stats import Stats, WorkerInfo, collect_stats, collect_workers
from .storage.aio import AsyncBackend
from .storage.backend import Backend, check_url, redact_url
from .storage.records import EnqueueRequest
from .tracing import OFF, enqueue_span
from .workflow import Workflow

log = logging.getLogger("taskq")


class TaskQ(Registry):
    """A task queue app.

    >>> app = TaskQ("shop")                      # embedded server in ./.taskq
    >>> app = TaskQ("shop", "redis://localhost:6379/0", namespace="shop")
    """

    def __init__(
        self,
        name: str = "taskq",
        redis_url: str | None = None,
        namespace: str | None = None,
        settings: Mapping[str, Any] | str | None = None,
        **overrides: Any,
    ) -> None:
        super().__init__(name, load_settings(
            settings, {"redis_url": redis_url, "namespace": namespace, **overrides},
            defaults={"namespace": name},  # one namespace per app
        ))
        if self.settings.redis_url:
            check_url(self.settings.redis_url)  # a bad URL fails here, not at the first job
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._abackend: AsyncBackend | None = None
        self._slots: Slots | None = None

    def __repr__(self) -> str:
        return f"<TaskQ {self.name} namespace={self.settings.namespace!r}>"

    # ------------------------------------------------------------ connection

    @property
    def backend(self) -> Backend:
        """The storage adapter; connects (or starts the embedded server) on first use."""
        if self._backend is None:
            with self._lock:
                if self._backend is None:
                    url = self.settings.redis_url or ensure_embedded_server()
                    log.debug("using server %s", redact_url(url))
                    self._backend = Backend(url, self.settings.namespace,
                                            retry_timeout=self.settings.enqueue_retry_timeout,
                                            durable_replicas=self.settings.durable_replicas,
                                            durable_timeout=self.settings.durable_timeout)
        return self._backend

    @property
    def abackend(self) -> AsyncBackend:
        """The asyncio storage adapter (one connection pool per event loop)."""
        if self._abackend is None or self._abackend.sync is not self.backend:
            self._abackend = AsyncBackend(self.backend)
        return self._abackend

    @property
    def slots(self) -> Slots:
        """The storage of each queue (one for all in the default key layout)."""
        if self._slots is None:
            self._slots = Slots(self)
        return self._slots

    @property
    def url(self) -> str:
        return self.backend.url

    def close(self) -> None:
        """Stop the event listener and close the connections; the app may be
        used again (it reconnects, and a later ``on_finish`` starts a new listener)."""
        events = self.__dict__.pop("events", None)
        if events is not None:
            events.stop()
        if self._slots is not None:
            self._slots.close()
        if self._backend is not None:
            self._backend.close()
            self._backend = None
        self._abackend = None

    async def aclose(self) -> None:
        """Close the running event loop's connections (the app may be used
        again); :meth:`close` closes the rest."""
        if self._abackend is not None:
            await self._abackend.aclose()

    # ------------------------------------------------------------ enqueue

    def enqueue(self, task_name: str, *args: Any, **kwargs: Any) -> Job[Any]:
        """Enqueue by name, from code that does not import the task."""
        return self.enqueue_call(task_name, args, kwargs)

    def enqueue_call(
        self,
        task_name: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: Mapping[str, Any],
        call: Mapping[str, Any] | None = None,
        *,
        job_id: str | None = None,
        eta: dt.datetime | None = None,
        front: bool = False,
        unique_key: str | None = None,
        resource: str | None = None,
    ) -> Job[Any]:
        builder, fields = self._build(task_name, args, kwargs, call, job_id=job_id, eta=eta, front=front,
                                      unique_key=unique_key, resource=resource)
        durable = builder.options.durable or self.settings.durable
        fields = self.slots.place(fields)
        with enqueue_span(self.settings, task_name, builder.options.queue) as span:
            result = self.slots.queue(fields.queue).enqueue([span.inject(fields)], durable=durable,
                                                            fresh=job_id is None)
            span.enqueued(result)
        (jid, created, state), = result
        return Job(self, jid, task=task_name, created=created, state=state,
                   result_timeout=builder.options.tombstone_timeout, queue=fields.queue)

    async def aenqueue_call(
        self,
        task_name: str,
        args: tuple[Any, ...] | list[Any],
        kwargs: Mapping[str, Any],
        call: Mapping[str, Any] | None = None,
        *,
        job_id: str | None = None,
        eta: dt.datetime | None = None,
        front: bool = False,
        unique_key: str | None = None,
        resource: str | None = None,
    ) -> Job[Any]:
        """:meth:`enqueue_call`, awaited."""
        builder, fields = self._build(task_name, args, kwargs, call, job_id=job_id, eta=eta, front=front,
                                      unique_key=unique_key, resource=resource)
        durable = builder.options.durable or self.settings.durable
        fields = self.slots.place(fields)
        with enqueue_span(self.settings, task_name, builder.options.queue) as span:
            result = await self.slots.aqueue(fields.queue).enqueue([span.inject(fields)], durable=durable,
                                                                   fresh=job_id is None)
            span.enqueued(result)
        (jid, created, state), = result
        return Job(self, jid, task=task_name, created=created, state=state,
                   result_timeout=builder.options.tombstone_timeout, queue=fields.queue)

    async def aenqueue(self, task_name: str, *args: Any, **kwargs: Any) -> Job[Any]:
        """:meth:`enqueue`, awaited."""
        return await self.aenqueue_call(task_name, args, kwargs)

    def _build(self, task_name: str, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any],
               call: Mapping[str, Any] | None, **where: Any) -> tuple[JobBuilder, EnqueueRequest]:
        """The builder of a call (cached per task when it has no overrides) and its job's fields."""
        if call:
            builder = JobBuilder(self.settings, task_name, self.options_for(task_name).merged(call), call)
        else:
            builder = self._builders.get(task_name) or self._builder(task_name)
        return builder, builder.build(args, kwargs, **where)

    def _builder(self, task_name: str) -> JobBuilder:
        builder = self._builders[task_name] = JobBuilder(self.settings, task_name, self.options_for(task_name), {})
        return builder

    def enqueue_many(self, items: Iterable[Item], **call: Any) -> list[Job[Any]]:
        """Enqueue many ``(task_name, args, kwargs)`` jobs, one script call per 1,000.

        Every per-job rule (unique keys, delays, priorities, ids) applies.
        The next chunk is built while the server runs the previous one.
        An error midway (a bad item, a server gone or refusing) is raised
        with ``enqueued``: the handles of the jobs enqueued before it, in
        order, as a successful call returns them.
        """
        with enqueue_span(self.settings) as span:
            bulk = Bulk(self, items, call, None if span is OFF else span.inject)
            results = bulk.send()
            span.enqueued([r for result in results for r in result])
            return bulk.handles(results)

    async def aenqueue_many(self, items: Iterable[Item], **call: Any) -> list[Job[Any]]:
        """:meth:`enqueue_many`, awaited: one script call per 1,000 jobs, in
        order; an error midway carries ``enqueued`` as there."""
        with enqueue_span(self.settings) as span:
            bulk = Bulk(self, items, call, None if span is OFF else span.inject)
            results = await bulk.asend()
            span.enqueued([r for result in results for r in result])
            return bulk.handles(results)

    def job(self, job_id: str) -> Workflow[Any]:
        """A handle on an existing job or workflow (no round trip until used)."""
        return Workflow(self, job_id)

    # ------------------------------------------------------------ workflows

    def signature(self, task_name: str, args: tuple[Any, ...] | list[Any] = (),
                  kwargs: Mapping[str, Any] | None = None, *, immutable: bool = False,
                  **options: Any) -> Signature:
        """A call of ``task_name`` not yet made, built without the task's code
        (see ``taskq.canvas``)."""
        return Signature(self, task_name, args, kwargs, options, immutable)

    def launch_workflow(self, canvas: Canvas, *, link_error: Signature | None = None,
                        defaults: Mapping[str, Any] | None = None) -> Workflow[Any]:
        """Enqueue a chain, group or chord (``canvas.apply_async()`` calls this)."""
        return launch(self, canvas, link_error=link_error, defaults=defaults)

    def enqueue_after(self, task_name: str, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any],
                      call: Mapping[str, Any] | None, depends_on: Iterable[Job[Any] | str],
                      on_dependency_failure: str = "cancel", **where: Any) -> Job[Any]:
        """Enqueue a job that waits until every job of ``depends_on`` succeeded."""
        call = dict(call or {})
        builder = JobBuilder(self.settings, task_name, self.options_for(task_name).merged(call), call)
        fields = builder.build(args, kwargs, **where)
        return enqueue_dependent(self, fields, depends_on, on_dependency_failure)

    # ------------------------------------------------------------ helpers

    @cached_property
    def control(self) -> JobControl:
        """Job control and inspection (cancel, requeue, failed jobs, listings)."""
        return JobControl(self)

    @cached_property
    def events(self) -> EventListener:
        """The background listener behind ``job.on_finish``."""
        return EventListener(self)

    # ------------------------------------------------------------ observability

    def stats(self, now_ms: int | None = None) -> Stats:
        """A snapshot of counters, run times, queues and throughput (see ``taskq.stats``)."""
        return collect_stats(self, now_ms)

    def workers(self) -> list[WorkerInfo]:
        """The registered worker processes, most recent heartbeat first."""
        return collect_workers(self)
