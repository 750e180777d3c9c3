"""``TaskQ``: the registry of tasks and the producer API."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from functools import cached_property
from typing import Any, ParamSpec, TypeVar, overload

from . import codec
from .bulk import ENQUEUE_CHUNK, Bulk, Item, by_queue, per_queue  # noqa: F401 - ENQUEUE_CHUNK re-exported
from .canvas import Canvas, Signature
from .control import JobControl
from .cron import Periodic
from .embedded import ensure_embedded_server
from .enqueue import JobBuilder, encode_payload
from .errors import ConfigurationError, DurabilityUnavailable, UnknownTask
from .events import EventListener
from .flowplan import enqueue_dependent, launch
from .job import Job
from .options import AppSettings, TaskOptions, load_settings, warn_unknown_task_flags
from .slots import Slots
from .stats import Stats, WorkerInfo, collect_stats, collect_workers
from .storage.aio import AsyncBackend
from .storage.backend import Backend, check_url, redact_url
from .storage.records import EnqueueRequest
from .task import Task
from .tracing import OFF, TRACE_FIELD, Off, Producing, enqueue_span
from .workflow import FLOW_MARK, Workflow

log = logging.getLogger("taskq")
P = ParamSpec("P")
R = TypeVar("R")
HOOK_EVENTS = frozenset({"job_started", "job_succeeded", "job_failed", "job_retried"})


class TaskQ:
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
        self.name = name
        self.settings: AppSettings = load_settings(
            settings, {"redis_url": redis_url, "namespace": namespace, **overrides},
            defaults={"namespace": name},  # one namespace per app
        )
        if self.settings.redis_url:
            check_url(self.settings.redis_url)  # a bad URL fails here, not at the first job
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.periodics: dict[str, Periodic] = {}
        self.hooks: dict[str, list[Callable[..., Any]]] = {e: [] for e in HOOK_EVENTS}
        self._lock = threading.Lock()
        self._backend: Backend | None = None
        self._abackend: AsyncBackend | None = None
        self._slots: Slots | None = None
        self._options_cache: dict[str, TaskOptions] = {}
        self._builders: dict[str, JobBuilder] = {}  # per task, for calls without overrides

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

    # ------------------------------------------------------------ registry

    @overload
    def task(self, fn: Callable[P, R]) -> Task[P, R]: ...
    @overload
    def task(self, fn: None = None, *, name: str | None = None, bind: bool = False,
             **flags: Any) -> Callable[[Callable[P, R]], Task[P, R]]: ...

    def task(self, fn: Callable[..., Any] | None = None, *, name: str | None = None, bind: bool = False,
             **flags: Any) -> Any:
        """Register a task: ``@app.task`` or ``@app.task(retry=3, timeout=60, ...)``.
        ``bind=True``: the worker passes the running job (``current_job()``)
        as the first argument, as Celery's ``bind=True`` passes the task."""
        if not isinstance(bind, bool):
            raise ConfigurationError(f"bind must be True or False, not {bind!r}")

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            task_name = name or f"{f.__module__}.{f.__qualname__}"
            if task_name in self.tasks and self.tasks[task_name].fn is not f:
                raise ConfigurationError(f"a task named {task_name!r} is already registered")
            t: Task[Any, Any] = Task(self, f, task_name, flags, bind=bind)
            self.tasks[task_name] = t
            self._options_cache.pop(task_name, None)
            self._builders.pop(task_name, None)
            return t

        return register(fn) if fn is not None else register

    def periodic(
        self,
        cron: str | None = None,
        *,
        every: float | dt.timedelta | None = None,
        tz: str | dt.tzinfo | None = None,
        catch_up: str = "one",
        name: str | None = None,
        args: tuple[Any, ...] = (),
        kwargs: Mapping[str, Any] | None = None,
        **flags: Any,
    ) -> Callable[[Callable[P, R]], Task[P, R]]:
        """Register a task that runs on a schedule: ``@app.periodic("*/5 * * * *")``
        or ``@app.periodic(every=timedelta(seconds=10))``."""
        schedule = Periodic.build(cron=cron, every=every, tz=tz, catch_up=catch_up)

        def register(f: Callable[..., Any]) -> Task[Any, Any]:
            known = set(self.tasks)
            t = self.task(name=name, **flags)(f)
            bound = schedule.bind(t.name, tuple(args), dict(kwargs or {}))
            other = self.periodics.get(t.name)
            if other is not None and other != bound:  # the same again (a module imported twice) is fine
                raise ConfigurationError(
                    f"periodic task {t.name!r} already runs on {other.description!r}; a task has one schedule: "
                    "give each schedule a name= of its own")
            try:  # arguments every tick would fail to encode fail here, not in the scheduler
                encode_payload(self.settings, t.name, bound.args, bound.kwargs)
            except Exception:
                if t.name not in known:
                    del self.tasks[t.name]
                raise
            self.periodics[t.name] = bound
            return t

        return register

    def on(self, event: str, fn: Callable[..., Any]) -> None:
        """Call ``fn`` in the worker on ``job_started``/``job_succeeded``/``job_failed``/``job_retried``."""
        if event not in HOOK_EVENTS:
            raise ConfigurationError(f"unknown event {event!r}; known: {', '.join(sorted(HOOK_EVENTS))}")
        self.hooks[event].append(fn)

    def options_for(self, name: str) -> TaskOptions:
        """Effective options of a task: settings task_flags > decorator > task_defaults > default."""
        cached = self._options_cache.get(name)
        if cached is None:
            task = self.tasks.get(name)
            flags = dict(task.flags) if task else {}
            flags.update(self.settings.task_flags.get(name, {}))
            cached = self.settings.default_options.merged(flags)
            self._options_cache[name] = cached
        return cached

    def job_options(self, name: str, overrides: bytes | None) -> TaskOptions:
        """Effective options of one job: its task's (``options_for``) with the
        per-call overrides stored with the job (msgpack; ValueError if they
        are not a map)."""
        options = self.options_for(name)
        if overrides:
            call = codec.loads(overrides)
            if not isinstance(call, dict):
                raise ValueError("undecodable payload: options are not a map")
            call.pop(TRACE_FIELD, None)  # the producer's trace context, not an option
            call.pop(FLOW_MARK, None)  # its place in a workflow, not an option
            options = options.merged(call)
        return options

    def check_settings(self) -> list[str]:
        """Warn about settings naming tasks that do not exist; returns their names."""
        return warn_unknown_task_flags(self.settings, set(self.tasks))

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
            return self._enqueue_many(Bulk(self, items, call, None if span is OFF else span.inject), span)

    def _enqueue_many(self, bulk: Bulk, span: Producing | Off) -> list[Job[Any]]:
        source = bulk.chunks()
        held: list[list[EnqueueRequest]] = []  # a durable chunk met by the stream

        def plain() -> Iterator[list[EnqueueRequest]]:
            for chunk, durable in source:
                if durable:
                    held.append(chunk)
                    return
                yield chunk

        results: list[list[tuple[str, bool, str]]] = []
        try:
            if self.slots.per_queue:
                for chunk, durable in source:
                    results.append(per_queue(chunk, self._slot_sender(durable)))
            while not self.slots.per_queue:
                results.extend(self.backend.enqueue_stream(plain(), fresh=True))  # builders generate every id
                if not held:
                    break
                results.append(self.backend.enqueue(held.pop(), durable=True, fresh=True))
        except Exception as exc:
            if isinstance(exc, DurabilityUnavailable):  # enqueued, only not confirmed on disk
                results.append(getattr(exc, "results", []))
            exc.enqueued = bulk.handles(results)  # type: ignore[attr-defined]
            raise
        span.enqueued([r for result in results for r in result])
        return bulk.handles(results)

    def _slot_sender(self, durable: bool) -> Callable[[str, list[EnqueueRequest]], list[tuple[str, bool, str]]]:
        """Sends one queue's part of a chunk to its slot (``queue`` key layout)."""
        def send(queue: str, jobs: list[EnqueueRequest]) -> list[tuple[str, bool, str]]:
            return self.slots.queue(queue).enqueue(jobs, durable=durable, fresh=True)
        return send

    async def aenqueue_many(self, items: Iterable[Item], **call: Any) -> list[Job[Any]]:
        """:meth:`enqueue_many`, awaited: one script call per 1,000 jobs, in
        order; an error midway carries ``enqueued`` as there."""
        with enqueue_span(self.settings) as span:
            bulk = Bulk(self, items, call, None if span is OFF else span.inject)
            results: list[list[tuple[str, bool, str]]] = []
            try:
                for chunk, durable in bulk.chunks():
                    if not self.slots.per_queue:
                        results.append(await self.abackend.enqueue(chunk, durable=durable, fresh=True))
                        continue
                    parts = {q: await self.slots.aqueue(q).enqueue(c, durable=durable, fresh=True)
                             for q, c in by_queue(chunk).items()}
                    results.append(per_queue(chunk, lambda q, _jobs, got=parts: got[q]))  # type: ignore[misc]
            except Exception as exc:
                if isinstance(exc, DurabilityUnavailable):
                    results.append(getattr(exc, "results", []))
                exc.enqueued = bulk.handles(results)  # type: ignore[attr-defined]
                raise
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

    def get_task(self, name: str) -> Task[Any, Any]:
        try:
            return self.tasks[name]
        except KeyError:
            raise UnknownTask(self.unknown_task_message(name)) from None

    def unknown_task_message(self, name: str) -> str:
        known = ", ".join(sorted(self.tasks)) or "(none)"
        return (f"unknown task {name!r} in namespace {self.settings.namespace!r}; this worker (app {self.name!r}) "
                f"knows: {known}. A job of another app sharing the namespace? Give each app its own (the default "
                "is the app's name); a task module not imported? Name it in settings include or --include")

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
