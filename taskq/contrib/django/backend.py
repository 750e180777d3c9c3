"""``TaskqBackend``: Django's task backend API on a taskq app.

Each Django task call becomes one taskq job of the runner task
(:data:`RUN_TASK`) whose arguments are the task's import path and its
arguments; Django's queue name, priority and ``run_after`` become the job's
queue, priority and due time, and the job id is the result id. Results are
kept (``tombstone=True``) for ``tombstone_ttl`` seconds (an app setting's
task default, 1 hour unless set).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db import close_old_connections
from django.tasks import Task, TaskContext, TaskResult, TaskResultStatus
from django.tasks.backends.base import BaseTaskBackend
from django.tasks.base import TaskError
from django.tasks.exceptions import TaskResultDoesNotExist
from django.tasks.signals import task_enqueued, task_finished, task_started
from django.utils import timezone
from django.utils.json import normalize_json
from django.utils.module_loading import import_string

from ... import JobInfo, JobNotFound, JobState, TaskQ, current_job

RUN_TASK = "taskq.contrib.django.run"
STATUS = {
    JobState.SCHEDULED: TaskResultStatus.READY, JobState.QUEUED: TaskResultStatus.READY,
    JobState.WAITING: TaskResultStatus.READY, JobState.STALLED: TaskResultStatus.READY,
    JobState.ACTIVE: TaskResultStatus.RUNNING, JobState.SUCCEEDED: TaskResultStatus.SUCCESSFUL,
    JobState.FAILED: TaskResultStatus.FAILED, JobState.CANCELLED: TaskResultStatus.FAILED,
    JobState.SKIPPED: TaskResultStatus.FAILED,
}


class TaskqBackend(BaseTaskBackend):
    """A ``django.tasks`` backend storing and running tasks with taskq."""

    supports_defer = True
    supports_async_task = True
    supports_get_result = True
    supports_priority = True

    def __init__(self, alias: str, params: dict[str, Any]) -> None:
        super().__init__(alias, params)
        settings = {str(k).lower(): v for k, v in self.options.items()}
        settings.setdefault("task_defaults", {"tombstone": True})
        self.app = TaskQ(f"django-{alias}", settings=settings)
        self.app.task(name=RUN_TASK, tombstone=True)(self._run)
        for event in ("job_succeeded", "job_failed"):  # run once the outcome is stored
            self.app.on(event, self._finished)

    # ------------------------------------------------------------ producer

    def _call(self, task: Task, args: Any, kwargs: Any) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
        self.validate_task(task)
        call = {"queue": task.queue_name, "priority": task.priority}
        return [task.module_path, normalize_json(list(args)), normalize_json(dict(kwargs))], {}, call

    def enqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        job_args, job_kwargs, call = self._call(task, args, kwargs)
        job = self.app.enqueue_call(RUN_TASK, job_args, job_kwargs, call, eta=_aware(task.run_after))
        return self._enqueued(task, job.id, args, kwargs)

    async def aenqueue(self, task: Task, args: Any, kwargs: Any) -> TaskResult:
        job_args, job_kwargs, call = self._call(task, args, kwargs)
        job = await self.app.aenqueue_call(RUN_TASK, job_args, job_kwargs, call, eta=_aware(task.run_after))
        return self._enqueued(task, job.id, args, kwargs)

    def _enqueued(self, task: Task, job_id: str, args: Any, kwargs: Any) -> TaskResult:
        result = TaskResult(task=task, id=job_id, status=TaskResultStatus.READY, enqueued_at=timezone.now(),
                            started_at=None, finished_at=None, last_attempted_at=None, args=list(args),
                            kwargs=dict(kwargs), backend=self.alias, errors=[], worker_ids=[])
        task_enqueued.send(type(self), task_result=result)
        return result

    # ------------------------------------------------------------ results

    def get_result(self, result_id: str) -> TaskResult:
        try:
            info = self.app.job(result_id).info()
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        return self.result_of(info)

    async def aget_result(self, result_id: str) -> TaskResult:
        try:
            info = await self.app.job(result_id).ainfo()
        except JobNotFound:
            raise TaskResultDoesNotExist(result_id) from None
        return self.result_of(info)

    def result_of(self, info: JobInfo) -> TaskResult:
        """The ``TaskResult`` of a job of the runner task."""
        if info.task != RUN_TASK or len(info.args) != 3:
            raise TaskResultDoesNotExist(info.id)  # a taskq job, not a Django task's
        path, args, kwargs = info.args
        try:
            task = import_string(path)
        except ImportError:
            raise TaskResultDoesNotExist(info.id) from None
        due = _time(info.due_at)
        task = task.using(priority=info.priority, queue_name=info.queue, run_after=due, backend=self.alias)
        attempted = _time(info.started_at)
        result = TaskResult(
            task=task, id=info.id, status=STATUS[info.state], enqueued_at=_time(info.created_at),
            started_at=attempted, finished_at=_time(info.finished_at), last_attempted_at=attempted,
            args=args, kwargs=kwargs, backend=self.alias,
            errors=[_error(e) for e in info.errors], worker_ids=[info.worker or ""] * info.attempts,
        )
        if info.state == JobState.SUCCEEDED:
            object.__setattr__(result, "_return_value", info.result)
        return result

    # ------------------------------------------------------------ worker

    def _run(self, path: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        """The runner task: calls the Django task in the worker."""
        task = import_string(path)
        if not isinstance(task, Task):
            raise TypeError(f"{path} is not a django.tasks Task")
        close_old_connections()
        try:
            started = task_started.has_listeners(type(self)) or task.takes_context
            result = self.get_result(current_job().id) if started else None
            if task_started.has_listeners(type(self)):
                task_started.send(type(self), task_result=result)
            if task.takes_context:
                value = task.call(TaskContext(task_result=result), *args, **kwargs)
            else:
                value = task.call(*args, **kwargs)
            return normalize_json(value)
        finally:
            close_old_connections()

    def _finished(self, outcome: Any) -> None:
        if task_finished.has_listeners(type(self)):
            task_finished.send(type(self), task_result=self.get_result(outcome.id))

    def check(self, **kwargs: Any) -> list[Any]:
        return []


def _aware(when: dt.datetime | None) -> dt.datetime | None:
    """``run_after`` as an aware time (a naive one is in Django's time zone)."""
    if when is None or timezone.is_aware(when):
        return when
    aware: dt.datetime = timezone.make_aware(when)
    return aware


def _time(seconds: float | None) -> dt.datetime | None:
    return dt.datetime.fromtimestamp(seconds, dt.UTC) if seconds else None


def _error(entry: dict[str, Any]) -> TaskError:
    """A taskq error entry as Django's ``TaskError``: the exception's import
    path is read from the traceback's last line (``module.Class: message``)."""
    tb = str(entry.get("traceback", ""))
    last = tb.strip().splitlines()[-1] if tb.strip() else str(entry.get("type", "Exception"))
    name = last.split(":", 1)[0].strip() or str(entry.get("type", "Exception"))
    return TaskError(exception_class_path=name if "." in name else f"builtins.{name}", traceback=tb)
