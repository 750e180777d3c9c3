"""An app's registry: its tasks, periodic schedules and worker hooks, and
the effective options of each task and job."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any, ParamSpec, TypeVar, overload

from . import codec
from .cron import Periodic
from .enqueue import JobBuilder, encode_payload
from .errors import ConfigurationError, UnknownTask
from .options import AppSettings, TaskOptions, warn_unknown_task_flags
from .task import Task, TaskApp
from .tracing import TRACE_FIELD
from .workflow import FLOW_MARK

P = ParamSpec("P")
R = TypeVar("R")
HOOK_EVENTS = frozenset({"job_started", "job_succeeded", "job_failed", "job_retried"})


class Registry(TaskApp):
    """The registering half of an app. It is declared a :class:`TaskApp`
    (the tasks it makes hold the app): ``TaskQ`` adds the storage and the
    enqueue calls that make it one."""

    def __init__(self, name: str, settings: AppSettings) -> None:
        self.name = name
        self.settings = settings
        self.tasks: dict[str, Task[Any, Any]] = {}
        self.periodics: dict[str, Periodic] = {}
        self.hooks: dict[str, list[Callable[..., Any]]] = {e: [] for e in HOOK_EVENTS}
        self._options_cache: dict[str, TaskOptions] = {}
        self._builders: dict[str, JobBuilder] = {}  # per task, for calls without overrides

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
