"""What each page shows, read through the library's public API (no web
framework here): plain data for the templates."""

from __future__ import annotations

import datetime as dt
import math
import pprint
from dataclasses import dataclass
from typing import Any

from taskq import JobInfo, TaskQ
from taskq.control import LISTABLE
from taskq.listing import JobPage, PeriodicInfo
from taskq.stats import QueueStats, Stats, TaskStats, WorkerInfo
from taskq.storage.backend import redact_url

from .chart import Chart, throughput_chart

PAGE_SIZES = (20, 50, 100, 200)


def supports_pause(app: TaskQ) -> bool:
    """Whether this taskq can pause queues (feature-detected, not versioned)."""
    return callable(getattr(app.control, "pause_queue", None)) and callable(getattr(app.control, "resume_queue", None))


def paused_queues(app: TaskQ, stats: Stats) -> dict[str, bool | None]:
    """Paused state per queue: from the stats when they carry it, else from
    ``app.control.queues()`` when there is one; None where unknown."""
    out: dict[str, bool | None] = {q: getattr(s, "paused", None) for q, s in stats.queues.items()}
    listing = getattr(app.control, "queues", None)
    if any(v is None for v in out.values()) and callable(listing):
        for row in listing():
            name = row.get("name") if isinstance(row, dict) else getattr(row, "name", None)
            paused = row.get("paused") if isinstance(row, dict) else getattr(row, "paused", None)
            if isinstance(name, str) and out.get(name) is None:
                out[name] = bool(paused)
    return out


@dataclass(frozen=True)
class Overview:
    stats: Stats
    queues: list[QueueStats]
    paused: dict[str, bool | None]
    workers: list[WorkerInfo]
    tasks: list[TaskStats]
    chart: Chart
    server: str  # the server URL without secrets
    can_pause: bool


def overview(app: TaskQ) -> Overview:
    stats = app.stats()
    return Overview(
        stats=stats, queues=[stats.queues[q] for q in sorted(stats.queues)], paused=paused_queues(app, stats),
        workers=app.workers(), tasks=[stats.tasks[t] for t in sorted(stats.tasks)],
        chart=throughput_chart(stats.throughput), server=redact_url(app.url), can_pause=supports_pause(app),
    )


@dataclass(frozen=True)
class Filters:
    state: str
    queue: str | None
    task: str | None
    error_type: str | None
    cursor: str
    limit: int

    @classmethod
    def parse(cls, query: dict[str, str]) -> Filters:
        """Filters from a query string; unknown values fall back to defaults."""
        state = query.get("state", "queued")
        if state not in LISTABLE:
            state = "queued"
        try:
            limit = int(query.get("limit", "50"))
        except ValueError:
            limit = 50
        return cls(state=state, queue=query.get("queue") or None, task=query.get("task") or None,
                   error_type=query.get("error_type") or None, cursor=query.get("cursor", ""),
                   limit=min(max(limit, 1), max(PAGE_SIZES)))

    def query(self, **changes: Any) -> dict[str, str]:
        """Query parameters of these filters (with ``changes``), empty ones left out."""
        values = {"state": self.state, "queue": self.queue, "task": self.task, "error_type": self.error_type,
                  "limit": None if self.limit == 50 else str(self.limit), **changes}
        return {k: str(v) for k, v in values.items() if v}


@dataclass(frozen=True)
class JobsView:
    filters: Filters
    page: JobPage
    states: tuple[str, ...]
    task_names: list[str]


def jobs(app: TaskQ, filters: Filters) -> JobsView:
    page = app.control.page(filters.state, queue=filters.queue, task=filters.task, error_type=filters.error_type,
                            cursor=filters.cursor, limit=filters.limit)
    return JobsView(filters=filters, page=page, states=tuple(LISTABLE), task_names=sorted(app.tasks))


@dataclass(frozen=True)
class JobView:
    info: JobInfo
    actions: list[str]  # names in taskq.web.actions.JOB_ACTIONS that fit the state
    workflow: dict[str, Any]  # parent / children / dependencies, where the job has any


def job_actions(state: str) -> list[str]:
    """The job actions that make sense in ``state`` (the scripts judge anyway)."""
    out = []
    if state in ("failed", "scheduled", "stalled", "active", "waiting", "cancelled", "skipped"):
        out.append("requeue")
    if state in ("queued", "scheduled", "failed"):
        out.append("stall")
    if state == "stalled":
        out.append("unstall")
    if state in ("queued", "scheduled", "waiting", "stalled", "active"):
        out.append("cancel")
    if state == "active":
        out.append("cancel_force")
    if state != "active":
        out.append("delete")
    return out


def workflow_of(info: JobInfo) -> dict[str, Any]:
    """Workflow links of a job, for the fields a JobInfo may carry
    (``parent``, ``children``, ``dependencies``); empty without any."""
    return {k: v for k in ("parent", "children", "dependencies") if (v := getattr(info, k, None))}


def job(app: TaskQ, job_id: str) -> JobView:
    info = app.job(job_id).info()
    return JobView(info=info, actions=job_actions(info.state.value), workflow=workflow_of(info))


def periodics(app: TaskQ) -> list[PeriodicInfo]:
    return app.control.periodics()


# ---------------------------------------------------------------- formatting (template filters)


def pretty(value: Any) -> str:
    """A job's arguments or result as readable text (Python notation)."""
    return pprint.pformat(value, width=100, sort_dicts=True)


def when(ts: float | None) -> str:
    """Epoch seconds as UTC time; "-" for None."""
    if ts is None:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def duration(seconds: float | None) -> str:
    """850ms, 2.5s, 3m05s, 2h10m; "-" for None."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        return ">300s"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def ms(value: float | None) -> str:
    """A run-time quantile (ms), as ``duration``."""
    if value is not None and value < 1:
        return "<1ms"
    return duration(None if value is None else value / 1000)


def last_error(info: JobInfo) -> str:
    """The last error of a job on one line, cut to 120 characters."""
    if not info.errors:
        return ""
    err = info.errors[-1]
    return " ".join(f"{err.get('type', '')}: {err.get('message', '')}".split())[:120]
