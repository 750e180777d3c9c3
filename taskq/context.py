"""The running job, as seen from inside a task: ``taskq.current_job()``."""

from __future__ import annotations

import contextvars
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from . import codec
from .errors import Cancelled

if TYPE_CHECKING:
    from .storage.backend import Backend


@dataclass
class JobContext:
    """Id, task name, attempt and fencing token of the running job."""

    id: str
    task: str
    queue: str
    attempt: int
    fencing_token: int
    backend: Backend | None = field(default=None, repr=False)
    cancel_level: int = 0  # set by the worker's heartbeat thread: 1 cooperative, 2 forced
    started: float = field(default_factory=time.monotonic)

    @property
    def cancel_requested(self) -> bool:
        return self.cancel_level > 0

    def checkpoint(self) -> None:
        """Raise ``taskq.Cancelled`` if the job was cancelled."""
        if self.cancel_level:
            raise Cancelled(f"job {self.id} was cancelled")

    def set_progress(self, fraction: float, message: str = "") -> None:
        """Record progress (0..1), shown by ``job.info()`` and ``taskq job show``."""
        if not 0.0 <= float(fraction) <= 1.0:
            raise ValueError("progress fraction must be within 0..1")
        if self.backend is not None:
            blob = codec.dumps({"fraction": float(fraction), "message": str(message), "at": time.time()})
            self.backend.set_progress(self.id, self.fencing_token, blob)


_current: contextvars.ContextVar[JobContext | None] = contextvars.ContextVar("taskq_current_job", default=None)


def current_job() -> JobContext:
    """The job being run; raises RuntimeError outside a task."""
    ctx = _current.get()
    if ctx is None:
        raise RuntimeError("current_job() called outside a running task")
    return ctx


def set_current(ctx: JobContext | None) -> contextvars.Token[JobContext | None]:
    return _current.set(ctx)


def reset_current(token: contextvars.Token[JobContext | None]) -> None:
    _current.reset(token)

