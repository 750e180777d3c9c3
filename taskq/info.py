"""What ``job.info()`` returns: a stored job with its arguments, result,
progress and errors decoded."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgpack

from . import codec
from .states import JobState
from .storage.records import JobRecord


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
    # workflows: the jobs waiting for this one, a handle's jobs, the
    # dependencies it still waits for (of dependency_count)
    parents: list[str] = field(default_factory=list)
    children: list[str] = field(default_factory=list)
    dependencies: list[str] = field(default_factory=list)
    dependency_count: int = 0
    waiting_for: str | None = None  # "dependencies" | "resource" (state waiting)
    workflow: str | None = None  # chain | group | chord: this job is a workflow's handle
    cause: str | None = None  # the job whose failure ended it
    # requeued while it ran: back in its queue when the running attempt ends
    requeue_requested: bool = False

    @property
    def parent(self) -> str | None:
        """The first job waiting for this one (a workflow's next step or handle)."""
        return self.parents[0] if self.parents else None

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
        parents=_parent_ids(rec.parents),
        dependency_count=rec.dependency_count,
        waiting_for=(None if rec.state != "waiting" else "dependencies" if rec.dependency_count else "resource"),
        workflow=rec.workflow_kind,
        cause=rec.cause,
        requeue_requested=rec.requeue_requested,
    )


def _parent_ids(raw: bytes | None) -> list[str]:
    """The ids in a ``parents`` field (msgpack [id, index, ...])."""
    value = _blob(raw)
    return [str(x) for x in value[::2]] if isinstance(value, list) else []
