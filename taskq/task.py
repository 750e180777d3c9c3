"""The task wrapper returned by ``@app.task``."""

from __future__ import annotations

import datetime as dt
import functools
import inspect
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic, ParamSpec, Protocol, TypeVar

from .appview import AppView
from .canvas import Signature
from .context import JobContext
from .errors import ConfigurationError
from .job import Job
from .options import TaskOptions, check_flag_names

P = ParamSpec("P")
R = TypeVar("R")


class TaskApp(AppView, Protocol):
    """What a task needs of its app: :class:`AppView` and the enqueue calls."""

    def enqueue_call(
        self, task_name: str, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any],
        call: Mapping[str, Any] | None = None, *, job_id: str | None = None, eta: dt.datetime | None = None,
        front: bool = False, unique_key: str | None = None, resource: str | None = None,
    ) -> Job[Any]: ...

    def enqueue_many(self, items: Iterable[tuple[str, tuple[Any, ...] | list[Any], Mapping[str, Any]]],
                     **call: Any) -> list[Job[Any]]: ...

    async def aenqueue_call(
        self, task_name: str, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any],
        call: Mapping[str, Any] | None = None, *, job_id: str | None = None, eta: dt.datetime | None = None,
        front: bool = False, unique_key: str | None = None, resource: str | None = None,
    ) -> Job[Any]: ...

    async def aenqueue_many(self, items: Iterable[tuple[str, tuple[Any, ...] | list[Any], Mapping[str, Any]]],
                            **call: Any) -> list[Job[Any]]: ...

    def enqueue_after(self, task_name: str, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any],
                      call: Mapping[str, Any] | None, depends_on: Iterable[Job[Any] | str],
                      on_dependency_failure: str = "cancel", **where: Any) -> Job[Any]: ...

    def signature(self, task_name: str, args: tuple[Any, ...] | list[Any] = (),
                  kwargs: Mapping[str, Any] | None = None, *, immutable: bool = False,
                  **options: Any) -> Signature: ...


class Task(Generic[P, R]):
    """A function registered with an app. Calling it runs it here and now;
    ``.delay()`` / ``.apply_async()`` enqueue it for a worker."""

    def __init__(self, app: TaskApp, fn: Callable[P, R], name: str, flags: Mapping[str, Any],
                 bind: bool = False) -> None:
        check_flag_names(flags, "task flag")
        self.app = app
        self.fn = fn
        self.bind = bind  # the worker passes the running job (a JobContext) as the first argument
        self.is_async = inspect.iscoroutinefunction(fn)  # the worker runs it on an event loop
        self.name = name
        self.flags = dict(flags)  # as given to the decorator
        app.settings.default_options.merged(self.flags)  # validate now, at decoration time
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<Task {self.name}>"

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def run(self, job: JobContext, args: Sequence[Any], kwargs: Mapping[str, Any]) -> Any:
        """Call the function for a job the worker runs (``bind=True``: with the
        job as its first argument)."""
        fn: Callable[..., Any] = self.fn
        return fn(job, *args, **kwargs) if self.bind else fn(*args, **kwargs)

    @property
    def options(self) -> TaskOptions:
        """Effective options: settings task_flags > decorator > task_defaults > default."""
        return self.app.options_for(self.name)

    def delay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """Enqueue with the task's options."""
        return self.app.enqueue_call(self.name, args, kwargs)

    async def adelay(self, *args: P.args, **kwargs: P.kwargs) -> Job[R]:
        """:meth:`delay`, awaited."""
        return await self.app.aenqueue_call(self.name, args, kwargs)

    def apply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | dt.timedelta | None = None,
        countdown: float | dt.timedelta | None = None,
        eta: dt.datetime | None = None,
        job_id: str | None = None,
        priority: int | str | None = None,
        front: bool = False,
        unique_key: str | None = None,
        resource: str | None = None,
        durable: bool | None = None,
        depends_on: Iterable[Job[Any] | str] | None = None,
        on_dependency_failure: str = "cancel",
        **flags: Any,
    ) -> Job[R]:
        """Enqueue with per-call options (they win over every other source).
        ``countdown`` is ``delay`` under Celery's name. ``depends_on``: the job
        waits (state ``waiting``) until every one of these jobs succeeded;
        ``on_dependency_failure``: ``"cancel"`` it (the default) or ``"run"``
        it anyway when one does not."""
        call = _call(flags, countdown, queue=queue, delay=delay, priority=priority, durable=durable)
        if depends_on is not None:
            return self.app.enqueue_after(self.name, tuple(args), dict(kwargs or {}), call, depends_on,
                                          on_dependency_failure, job_id=job_id, eta=eta, front=front,
                                          unique_key=unique_key, resource=resource)
        return self.app.enqueue_call(
            self.name, tuple(args), dict(kwargs or {}), call,
            job_id=job_id, eta=eta, front=front, unique_key=unique_key, resource=resource,
        )

    async def aapply_async(
        self,
        args: tuple[Any, ...] | list[Any] = (),
        kwargs: Mapping[str, Any] | None = None,
        *,
        queue: str | None = None,
        delay: float | dt.timedelta | None = None,
        countdown: float | dt.timedelta | None = None,
        eta: dt.datetime | None = None,
        job_id: str | None = None,
        priority: int | str | None = None,
        front: bool = False,
        unique_key: str | None = None,
        resource: str | None = None,
        durable: bool | None = None,
        **flags: Any,
    ) -> Job[R]:
        """:meth:`apply_async`, awaited."""
        call = _call(flags, countdown, queue=queue, delay=delay, priority=priority, durable=durable)
        return await self.app.aenqueue_call(
            self.name, tuple(args), dict(kwargs or {}), call,
            job_id=job_id, eta=eta, front=front, unique_key=unique_key, resource=resource,
        )

    def s(self, *args: Any, **kwargs: Any) -> Signature:
        """A signature: this call not yet made (in a chain it receives the previous value first)."""
        return self.app.signature(self.name, args, kwargs)

    def si(self, *args: Any, **kwargs: Any) -> Signature:
        """An immutable signature: in a chain it ignores the previous value."""
        return self.app.signature(self.name, args, kwargs, immutable=True)

    def map(self, iterable: Iterable[Any], **call: Any) -> list[Job[R]]:
        """Enqueue one job per item (a tuple of args, a dict of kwargs, or one arg),
        thousands per round trip. An error midway carries ``enqueued``, the
        handles of the jobs enqueued before it (see ``TaskQ.enqueue_many``)."""
        return self.app.enqueue_many(self._items(iterable), **call)

    async def amap(self, iterable: Iterable[Any], **call: Any) -> list[Job[R]]:
        """:meth:`map`, awaited."""
        return await self.app.aenqueue_many(self._items(iterable), **call)

    def _items(self, iterable: Iterable[Any]) -> list[tuple[str, tuple[Any, ...], Mapping[str, Any]]]:
        items: list[tuple[str, tuple[Any, ...], Mapping[str, Any]]] = []
        for item in iterable:
            if isinstance(item, tuple):
                items.append((self.name, item, {}))
            elif isinstance(item, dict):
                items.append((self.name, (), item))
            else:
                items.append((self.name, (item,), {}))
        return items


def _call(flags: Mapping[str, Any], countdown: float | dt.timedelta | None, **named: Any) -> dict[str, Any]:
    """A call's overrides: ``flags`` and the named options that were given
    (``countdown`` is ``delay`` under Celery's name)."""
    if countdown is not None:
        if named.get("delay") is not None:
            raise ConfigurationError("give delay= or countdown= (the same option), not both")
        named["delay"] = countdown
    call = dict(flags)
    for key, value in named.items():
        if value is not None:
            call[key] = value
    return call
