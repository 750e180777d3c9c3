"""Job handles: state, result, info and control of one job, from sync or
async code (the result wait is one generator both drive)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, Generic, Protocol, TypeVar

from . import codec
from .appview import AppView
from .errors import NoResult, TaskFailed
from .info import JobInfo, decode_error, decode_errors, job_info
from .states import FINISHED, JobState
from .storage.aio import AsyncBackend
from .storage.backend import Backend
from .waits import adrive, drive, not_found, outcome_steps

__all__ = ["FINISHED", "Job", "JobInfo", "JobState", "decode_errors", "job_info", "not_found", "outcome_steps",
           "outcome_value"]


def outcome_value(job_id: str, state: str, blob: bytes) -> Any:
    """The return value for a finished job, or raise TaskFailed (NoResult
    for a success whose task keeps no value)."""
    if state == JobState.SUCCEEDED:
        if not blob:  # a kept value is never empty: None packs as b"\xc0"
            raise NoResult(f"job {job_id} succeeded, but its task keeps no return value: declare it with "
                           "tombstone=True (or pass tombstone=True per call); job.wait() waits without a value")
        return codec.loads(blob)
    err = decode_error(blob)
    raise TaskFailed(job_id, state, err.get("type", ""), err.get("message", ""), err.get("traceback", ""))


R = TypeVar("R")


class _Control(Protocol):
    def script_call(self, operation: str, *, force: bool = False,
                    front: bool = False) -> tuple[str, tuple[Any, ...]]: ...
    def cancel(self, job_id: str, force: bool = False, queue: str | None = None) -> str: ...
    def requeue(self, job_id: str, front: bool = False, queue: str | None = None) -> str: ...
    def stall(self, job_id: str, queue: str | None = None) -> str: ...
    def unstall(self, job_id: str, queue: str | None = None) -> str: ...
    def retract(self, job_id: str, queue: str | None = None) -> str: ...
    def delete(self, job_id: str, queue: str | None = None) -> str: ...


class _Events(Protocol):
    def on_finish(self, job: Job[Any], fn: Callable[[Job[Any], JobState], Any]) -> None: ...


class JobApp(AppView, Protocol):
    """What a job handle needs of its app: :class:`AppView`, job control and
    the event listener."""

    @property
    def control(self) -> _Control: ...

    @property
    def events(self) -> _Events: ...

    @property
    def abackend(self) -> AsyncBackend: ...


class Job(Generic[R]):
    """A handle on one job. Cheap to create: it holds only the id. ``R`` is
    its task's return type: what ``result()`` returns."""

    def __init__(self, app: JobApp, job_id: str, *, task: str | None = None, created: bool = True,
                 state: str | None = None, result_timeout: float | None = None,
                 queue: str | None = None) -> None:
        self.app = app
        self.id = job_id
        self.queue = queue  # where it was enqueued, if known: its slot in the queue key layout
        self.task_name = task
        self.created = created  # False when enqueue returned an existing job
        self._initial_state = state
        self._result_timeout = result_timeout  # the enqueue's effective tombstone_timeout

    def __repr__(self) -> str:
        return f"<Job {self.id} {self.task_name or ''}>"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Job) and other.id == self.id and other.app is self.app

    def __hash__(self) -> int:
        return hash(self.id)

    @property
    def store(self) -> Backend:
        """The storage holding this job (its queue's slot in the ``queue`` key layout)."""
        return self.app.slots.of(self.id, self.queue)

    @property
    def astore(self) -> AsyncBackend:
        """:attr:`store`'s asyncio adapter (a handle made from an id alone looks the job up once)."""
        slots = self.app.slots
        if not slots.per_queue:
            return self.app.abackend
        if self.queue is None:
            slots.of(self.id)
            self.queue = slots.queue_of(self.id)
        return slots.aqueue(self.queue) if self.queue else self.app.abackend

    @property
    def state(self) -> JobState:
        state = self.store.job_state(self.id)
        if state is None:
            raise not_found(self.app, self.id)
        return JobState(state)

    def info(self) -> JobInfo:
        """Everything stored about the job, with its workflow links (parents,
        a handle's children, the dependencies it still waits for)."""
        rec = self.store.job_record(self.id)
        if rec is None:
            raise not_found(self.app, self.id)
        info = job_info(rec)
        if rec.parents or rec.dependency_count or rec.workflow_kind:
            links = self.store.links(self.id)
            children = links.members + [m for q in rec.workflow_queues  # its jobs in other queues' slots
                                        for m in self.app.slots.queue(q).links(self.id).members]
            info = dataclasses.replace(info, children=children, dependencies=links.pending)
        return info

    def result(self, timeout: float | None = None) -> R:
        """Block until the job finishes and return its value.

        Raises ``TaskFailed`` if it failed (or was cancelled/skipped),
        ``NoResult`` if it succeeded but its task keeps no value (declare it
        with ``tombstone=True``), and ``ResultTimeout`` when ``timeout``
        seconds pass (default: the ``tombstone_timeout`` the job was
        enqueued with, per call or the task's).
        """
        state, blob = self._outcome(timeout)
        value: R = outcome_value(self.id, state, blob)
        return value

    def get(self, timeout: float | None = None) -> R:
        """``result()`` under Celery's and RQ's name."""
        return self.result(timeout)

    def wait(self, timeout: float | None = None) -> JobState:
        """Block until the job finishes and return its final state (never
        raises for a failed job; ``ResultTimeout`` when ``timeout`` passes)."""
        return JobState(self._outcome(timeout)[0])

    def get_status(self) -> JobState:
        """``state`` under RQ's name."""
        return self.state

    def _outcome(self, timeout: float | None) -> tuple[str, bytes]:
        """Wait for the job's outcome: (final state, value-or-error blob)."""
        backend = self.store
        if timeout is None:
            if self._result_timeout is None and self.task_name is None:  # a handle from app.job(id): ask the job
                self.task_name = backend.job_task(self.id)
            timeout = self._default_wait()
        return drive(outcome_steps(self.app, self.id, timeout), backend, self.id)

    def _default_wait(self) -> float:
        """``tombstone_timeout`` of the enqueue that made this handle, else of its task."""
        if self._result_timeout is not None:
            return self._result_timeout
        if self.task_name is None:
            return self.app.settings.default_options.tombstone_timeout
        return self.app.options_for(self.task_name).tombstone_timeout

    # -- asyncio: the same calls, awaited (see docs/asyncio.md)

    async def astate(self) -> JobState:
        """:attr:`state`, awaited."""
        state = await self.astore.job_state(self.id)
        if state is None:
            raise not_found(self.app, self.id)
        return JobState(state)

    async def ainfo(self) -> JobInfo:
        """:meth:`info`, awaited."""
        rec = await self.astore.job_record(self.id)
        if rec is None:
            raise not_found(self.app, self.id)
        return job_info(rec)

    async def aresult(self, timeout: float | None = None) -> R:
        """:meth:`result`, awaited: the wait blocks on the server, not the loop."""
        state, blob = await self._aoutcome(timeout)
        value: R = outcome_value(self.id, state, blob)
        return value

    async def aget(self, timeout: float | None = None) -> R:
        """:meth:`get`, awaited."""
        return await self.aresult(timeout)

    async def await_(self, timeout: float | None = None) -> JobState:
        """:meth:`wait`, awaited (``wait`` with an ``a`` in front is a keyword)."""
        return JobState((await self._aoutcome(timeout))[0])

    async def acancel(self, force: bool = False) -> str:
        """:meth:`cancel`, awaited."""
        return await self._acontrol("cancel", force=force)

    async def arequeue(self, front: bool = False) -> None:
        """:meth:`requeue`, awaited."""
        await self._acontrol("requeue", front=front)

    async def astall(self) -> None:
        """:meth:`stall`, awaited."""
        await self._acontrol("stall")

    async def aunstall(self) -> None:
        """:meth:`unstall`, awaited."""
        await self._acontrol("unstall")

    async def aretract(self) -> None:
        """:meth:`retract`, awaited."""
        await self._acontrol("retract")

    async def adelete(self) -> None:
        """:meth:`delete`, awaited."""
        await self._acontrol("delete")

    async def _acontrol(self, operation: str, *, force: bool = False, front: bool = False) -> str:
        name, args = self.app.control.script_call(operation, force=force, front=front)
        return await self.astore.control(name, self.id, *args, operation=operation)

    async def _aoutcome(self, timeout: float | None) -> tuple[str, bytes]:
        backend = self.astore
        if timeout is None:
            if self._result_timeout is None and self.task_name is None:
                self.task_name = await backend.job_task(self.id)
            timeout = self._default_wait()
        return await adrive(outcome_steps(self.app, self.id, timeout), backend, self.id)

    # -- control (each is one atomic script; see taskq/storage/lua)

    def cancel(self, force: bool = False) -> str:
        """Cancel: ``'cancelled'`` if it had not started, ``'requested'`` if it runs."""
        return self.app.control.cancel(self.id, force=force, queue=self.queue)

    def requeue(self, front: bool = False) -> None:
        self.app.control.requeue(self.id, front=front, queue=self.queue)

    def stall(self) -> None:
        self.app.control.stall(self.id, queue=self.queue)

    def unstall(self) -> None:
        self.app.control.unstall(self.id, queue=self.queue)

    def retract(self) -> None:
        self.app.control.retract(self.id, queue=self.queue)

    def delete(self) -> None:
        self.app.control.delete(self.id, queue=self.queue)

    def on_finish(self, fn: Callable[[Job[R], JobState], Any]) -> None:
        """Call ``fn(job, state)`` once, in this process, when the job finishes.
        Raises ``JobNotFound`` if there is no such job."""
        self.app.events.on_finish(self, fn)
