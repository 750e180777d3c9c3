"""The record a child sends for each finished job (see settle_claim.lua),
and the log line it writes for it."""

from __future__ import annotations

import bisect
import logging
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

from .. import codec
from ..storage.keys import HISTOGRAM_BUCKETS_MS as BUCKETS_MS  # upper bounds (ms); the last bucket is +Inf
from ..storage.records import ClaimedJob

log = logging.getLogger("taskq.worker")


def bucket_name(duration_ms: float) -> str:
    i = bisect.bisect_left(BUCKETS_MS, duration_ms)
    return f"le_{BUCKETS_MS[i]}" if i < len(BUCKETS_MS) else "le_inf"


def error_entry(exc: BaseException | None, attempt: int, *, kind: str = "error",
                exc_type: str | None = None, message: str | None = None, tb: str | None = None) -> bytes:
    """An error-history entry: type, message, traceback, attempt, time."""
    if exc is not None:
        exc_type = exc_type or type(exc).__name__
        message = message if message is not None else str(exc)
        tb = tb if tb is not None else "".join(traceback.format_exception(exc))[-8000:]
    return codec.dumps({
        "type": exc_type or "Error", "message": message or "", "traceback": tb or "",
        "attempt": attempt, "kind": kind, "at": time.time(),
    })


@dataclass
class Outcome:
    id: str
    token: int
    kind: str  # ok | fail | retry | requeue | cancel | release
    blob: bytes = b""
    delay_ms: int = 0
    ttl_ms: int = 0
    keep_ms: int = 0
    duration_ms: float = 0.0
    flag: str = ""
    task: str = ""
    exc: BaseException | None = None
    value: Any = None
    after: list[Any] = field(default_factory=list)  # callbacks run once recorded

    def fields(self) -> list[Any]:
        return [self.id, self.token, self.kind, self.blob, self.delay_ms, self.ttl_ms, self.keep_ms,
                int(self.duration_ms), bucket_name(self.duration_ms), self.flag]


def log_outcome(job: ClaimedJob, out: Outcome) -> None:
    """The worker's log line for a finished job (none for a success below INFO)."""
    if out.kind == "ok":
        if not log.isEnabledFor(logging.INFO):  # the hot path: build nothing for a line not written
            return
        log.info("job %s %s succeeded in %.1fms", job.id, job.task, out.duration_ms,
                 extra={"job_id": job.id, "task": job.task, "outcome": "succeeded"})
    else:
        what = {"fail": "failed", "retry": "failed, will retry", "requeue": "requeued",
                "cancel": "cancelled"}[out.kind]
        later = f" in {out.delay_ms / 1000:g}s" if out.kind in ("retry", "requeue") else ""
        log.warning("job %s %s %s%s (attempt %d, ran %.1fms): %s", job.id, job.task, what, later, job.attempt,
                    out.duration_ms, f"{type(out.exc).__name__}: {out.exc}" if out.exc else "",
                    extra={"job_id": job.id, "task": job.task, "outcome": out.kind})
