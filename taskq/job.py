"""Job handles: state, result, info and control of one job."""

from __future__ import annotations

import enum
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, TypeVar

import msgpack

from . import codec
from .appview import AppView
from .errors import JobNotFound, NoResult, ResultTimeout, TaskFailed
from .storage.records import JobRecord


class JobState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waits in the schedule for its due time
    QUEUED = "queued"  # in its ready list
    WAITING = "waiting"  # waits for a resource held by another job, or held back by a flow limit
    ACTIVE = "active"  # leased by a worker
    STALLED = "stalled"  # held back by an operator
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # its resource was busy (on_locked="skip")
    EXPIRED = "expired"  # not started by its expiry (expires=...): never ran

    @property
    def finished(self) -> bool:
        return self in FINISHED

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.SKIPPED,
                      JobState.EXPIRED})
# Longest single blocking call; longer waits loop (keeps below the socket timeout).
_WAIT_SLICE = 10.0


def decode_error(blob: bytes) -> dict[str, Any]:
    """An error entry as stored by the worker (empty dict if absent/garbled)."""
    if not blob:
        return {}
    try:
        value = codec.loads(blob)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def decode_errors(raw: bytes | None) -> list[dict[str, Any]]:
    """The error history (a garbled one, not written by taskq, reads as empty)."""
    if not raw:
        return []
    try:
        entries = msgpack.unpackb(raw, raw=True)
    except (ValueError, msgpack.ExtraData, msgpack.FormatError, msgpack.StackError):
        return []
    if not isinstance(entries, list):
        return []
    return [decode_error(b) for b in entries if isinstance(b, bytes)]


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


@dataclass(frozen=True)
class JobInfo:
    """Everything stored about a job (see ``Job.info()``)."""

    id: str
    state: JobState
    task: str
    queue: str
    priority: int
    args: list[Any]
    kwargs: dict[str, Any]
    created_at: float | None
    started_at: float | None
    finished_at: float | None
    due_at: float | None
    attempts: int
    lost_count: int  # times its worker was lost under it (not counted in attempts)
    worker: str | None
    errors: list[dict[str, Any]]
    result: Any
    progress: dict[str, Any] | None
    requeue_count: int
    cancel_count: int
    cancel_requested: bool
    unique_key: str | None
    resource: str | None
    skipped_by: str | None
    options: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["state"] = self.state.value
        return d


def _seconds(ms: int | None) -> float | None:
    return ms / 1000.0 if ms is not None else None


def _blob(raw: bytes | None) -> Any:
    """A msgpack value (None if absent or garbled)."""
    if raw is None:
        return None
    try:
        return codec.loads(raw)
    except ValueError:
        return None


def job_info(rec: JobRecord) -> JobInfo:
    """A stored job as the user sees it: arguments, result and progress decoded."""
    try:
        args, kwargs = codec.decode_args(rec.payload)
    except ValueError:
        args, kwargs = [], {"<undecodable payload>": repr(rec.payload)[:200]}
    options = _blob(rec.options)
    return JobInfo(
        id=rec.id,
        state=JobState(rec.state),
        task=rec.task,
        queue=rec.queue,
        priority=rec.priority,
        args=args,
        kwargs=kwargs,
        created_at=_seconds(rec.created_ms),
        started_at=_seconds(rec.started_ms),
        finished_at=_seconds(rec.finished_ms),
        due_at=_seconds(rec.due_ms),
        attempts=rec.attempts,
        lost_count=rec.lost_count,
        worker=rec.worker,
        errors=decode_errors(rec.errors),
        result=_blob(rec.result),
        progress=_blob(rec.progress),
        requeue_count=rec.requeue_count,
        cancel_count=rec.cancel_count,
        cancel_requested=rec.cancel_requested,
        unique_key=rec.unique_key,
        resource=rec.resource,
        skipped_by=rec.skipped_by,
        options=options if isinstance(options, dict) else {},
    )


R = TypeVar("R")


def not_found(app: AppView, job_id: str) -> JobNotFound:
    """The error for a job id with no job: it names the retention that drops
    finished jobs, the likeliest reason a job once there is gone."""
    s = app.settings
    return JobNotFound(f"no job {job_id!r} (never created, deleted, or expired: a finished job is kept "
                       f"succeeded_ttl={s.succeeded_ttl:g}s, a failed one failed_ttl={s.failed_ttl:g}s)")



class _Control(Protocol):
    def cancel(self, job_id: str, force: bool = False) -> str: ...
    def requeue(self, job_id: str, front: bool = False) -> str: ...
    def stall(self, job_id: str) -> str: ...
    def unstall(self, job_id: str) -> str: ...
    def retract(self, job_id: str) -> str: ...
    def delete(self, job_id: str) -> str: ...


class _Events(Protocol):
    def on_finish(self, job: Job[Any], fn: Callable[[Job[Any], JobState], Any]) -> None: ...


class JobApp(AppView, Protocol):
    """What a job handle needs of its app: :class:`AppView`, job control and
    the event listener."""

    @property
    def control(self) -> _Control: ...

    @property
    def events(self) -> _Events: ...


class Job(Generic[R]):
    """A handle on one job. Cheap to create: it holds only the id. ``R`` is
    its task's return type: what ``result()`` returns."""

    def __init__(self, app: JobApp, job_id: str, *, task: str | None = None, created: bool = True,
                 state: str | None = None, result_timeout: float | None = None) -> None:
        self.app = app
        self.id = job_id
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
    def state(self) -> JobState:
        state = self.app.backend.job_state(self.id)
        if state is None:
            raise not_found(self.app, self.id)
        return JobState(state)

    def info(self) -> JobInfo:
        rec = self.app.backend.job_record(self.id)
        if rec is None:
            raise not_found(self.app, self.id)
        return job_info(rec)

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
        if timeout is None:
            timeout = self._default_wait()
        deadline = time.monotonic() + timeout
        backend = self.app.backend
        # Always watch first, tombstone or not: it marks the job (wt) so that
        # every way it can finish pushes its outcome -- the scripts' own
        # finalizations (cancel before it ran, cancelled or skipped at claim,
        # worker lost) keep no result (keep_ms 0) and push only for a watched job.
        state, blob = backend.watch(self.id, within=min(timeout, _WAIT_SLICE))
        if not state:
            raise not_found(self.app, self.id)
        if JobState(state).finished:
            return state, blob
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            raw = backend.wait_outcome(self.id, min(left, _WAIT_SLICE))
            if raw is not None:
                state, blob = msgpack.unpackb(raw, raw=True)
                return state.decode(), blob
        state, blob = backend.watch(self.id, within=0)
        if not state:
            raise not_found(self.app, self.id)
        if JobState(state).finished:
            return state, blob
        raise ResultTimeout(f"job {self.id} still {state} after {timeout:g}s")

    def _default_wait(self) -> float:
        """``tombstone_timeout`` of the enqueue that made this handle, else of its task."""
        if self._result_timeout is not None:
            return self._result_timeout
        if self.task_name is None:  # a handle from app.job(id): ask the job
            self.task_name = self.app.backend.job_task(self.id)
        if self.task_name is None:
            return self.app.settings.default_options.tombstone_timeout
        return self.app.options_for(self.task_name).tombstone_timeout

    # -- control (each is one atomic script; see taskq/storage/lua)

    def cancel(self, force: bool = False) -> str:
        """Cancel: ``'cancelled'`` if it had not started, ``'requested'`` if it runs."""
        return self.app.control.cancel(self.id, force=force)

    def requeue(self, front: bool = False) -> None:
        self.app.control.requeue(self.id, front=front)

    def stall(self) -> None:
        self.app.control.stall(self.id)

    def unstall(self) -> None:
        self.app.control.unstall(self.id)

    def retract(self) -> None:
        self.app.control.retract(self.id)

    def delete(self) -> None:
        self.app.control.delete(self.id)

    def on_finish(self, fn: Callable[[Job[R], JobState], Any]) -> None:
        """Call ``fn(job, state)`` once, in this process, when the job finishes.
        Raises ``JobNotFound`` if there is no such job."""
        self.app.events.on_finish(self, fn)
