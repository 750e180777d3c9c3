"""Listings for inspection tools: pages of jobs by state, resumed from a
cursor, and the periodic tasks with their last and next tick.

A page reads only what it shows, plus what filters skip, up to a budget:
paging through 100,000 jobs never loads them all. Cursors are positions in
the state's index (or a scan cursor for ``waiting``): jobs that enter or
leave the index meanwhile shift later pages by as many places.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .appview import AppView
from .errors import ConfigurationError
from .job import JobInfo, job_info
from .storage.backend import Backend
from .storage.pages import cron_ticks, ready_slice, scan_job_states


class JobSource(Protocol):
    """Where pages come from: job control's indexes (``JobControl``)."""

    @property
    def app(self) -> AppView: ...

    @property
    def _b(self) -> Backend: ...

    def _active_ids(self) -> list[str]: ...

    def _index_key(self, state: str) -> str: ...

BATCH = 200  # job hashes read per round trip
SCAN_COUNT = 1000  # keys per SCAN step (waiting jobs)


@dataclass(frozen=True)
class JobPage:
    """One page of :meth:`JobControl.page`."""

    state: str
    jobs: list[JobInfo]
    cursor: str  # where this page began
    next_cursor: str | None  # None: nothing after this page
    total: int | None  # jobs in the state before filters, when one read tells it
    examined: int  # index entries read for this page (the filters' cost)


@dataclass(frozen=True)
class PeriodicInfo:
    name: str
    schedule: str  # the cron string, or "every Ns"
    tz: str
    catch_up: str
    queue: str
    last_tick_at: float | None  # epoch seconds of the last tick fired, None before the first
    next_tick_at: float | None  # epoch seconds of the next tick, None when the schedule ended


def _parse_cursor(cursor: str, scan: bool) -> int:
    text = cursor[1:] if scan and cursor.startswith("s") else cursor
    if not text:
        return 0
    if not text.isdigit() or (scan and not cursor.startswith("s")):
        raise ConfigurationError(f"bad cursor {cursor!r}: pass back a page's next_cursor")
    return int(text)


def _matches(info: JobInfo, queue: str | None, task: str | None, error_type: str | None) -> bool:
    if (queue and info.queue != queue) or (task and info.task != task):
        return False
    return not error_type or bool(info.errors and info.errors[-1].get("type") == error_type)


def page_jobs(control: JobSource, state: str, *, queue: str | None = None, task: str | None = None,
              error_type: str | None = None, cursor: str = "", limit: int = 50, budget: int = 5000) -> JobPage:
    """Up to ``limit`` jobs in ``state`` matching the filters, from ``cursor``
    on, reading at most ``budget`` index entries: a page may hold fewer jobs
    than ``limit`` and still have a ``next_cursor`` when the filters skip many."""
    if limit < 1 or budget < 1:
        raise ConfigurationError("limit and budget must be at least 1")
    if state == "waiting":
        return _page_scan(control.app, control._b, state, queue, task, error_type, cursor, limit, budget)
    b = control._b
    fetch: Callable[[int, int], list[str]]
    total: int | None
    if state == "queued":
        queues = [queue] if queue else b.queue_names()
        total = ready_slice(b, queues, 0, 0)[1]
        fetch = lambda at, n: ready_slice(b, queues, at, n)[0]  # noqa: E731
    elif state == "active":
        active = control._active_ids()
        total = len(active)
        fetch = lambda at, n: active[at:at + n]  # noqa: E731
    else:
        key = control._index_key(state)
        newest = state != "scheduled"
        total = b.zcard(key) if key != b.keys.done else None  # the done index holds several states
        fetch = lambda at, n: b.zset_ids(key, n, newest_first=newest, offset=at)  # noqa: E731
    start = pos = _parse_cursor(cursor, scan=False)
    out: list[JobInfo] = []
    seen: set[str] = set()
    while len(out) < limit and pos - start < budget:
        want = min(BATCH, budget - (pos - start))
        ids = fetch(pos, want)
        for jid, rec in zip(ids, b.job_records(ids)):
            pos += 1
            if jid in seen or rec is None or rec.state != state:
                continue
            seen.add(jid)
            info = job_info(rec)
            if _matches(info, queue, task, error_type):
                out.append(info)
                if len(out) >= limit:
                    break
        if len(ids) < want and len(out) < limit:
            return JobPage(state, out, cursor, None, total, pos - start)
    return JobPage(state, out, cursor, str(pos), total, pos - start)


def _page_scan(app: AppView, b: Backend, state: str, queue: str | None, task: str | None, error_type: str | None,
               cursor: str, limit: int, budget: int) -> JobPage:
    """Waiting jobs have no index: a resumable SCAN of the job hashes. A page
    ends after the SCAN step that filled it (so it may hold a few more than
    ``limit``)."""
    scan = _parse_cursor(cursor, scan=True)
    out: list[JobInfo] = []
    examined = 0
    while True:
        scan, rows = scan_job_states(b, scan, SCAN_COUNT)
        examined += len(rows)
        ids = [jid for jid, st in rows if st == state]
        for i in range(0, len(ids), BATCH):
            chunk = ids[i:i + BATCH]
            for rec in b.job_records(chunk):
                if rec is not None and rec.state == state:
                    info = job_info(rec)
                    if _matches(info, queue, task, error_type):
                        out.append(info)
        if scan == 0:
            return JobPage(state, out, cursor, None, None, examined)
        if len(out) >= limit or examined >= budget:
            return JobPage(state, out, cursor, f"s{scan}", None, examined)


def periodic_infos(app: AppView) -> list[PeriodicInfo]:
    """Every periodic task of the app, by name, with its last tick (as the
    schedulers recorded it) and its next one (on the server's clock)."""
    now = app.backend.server_time_ms()
    last: dict[str, int] = {}
    for b in app.slots.all():
        last.update(cron_ticks(b))
    out = []
    for name, p in sorted(app.periodics.items()):
        nxt = p.next_after(max(now, last.get(name, 0)))
        out.append(PeriodicInfo(
            name=name, schedule=p.description, tz=str(p.tz), catch_up=p.catch_up,
            queue=app.options_for(name).queue,
            last_tick_at=last[name] / 1000 if name in last else None,
            next_tick_at=nxt / 1000 if nxt is not None else None,
        ))
    return out

