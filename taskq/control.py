"""Job control and inspection: single-job operations (each one atomic
script) and the bulk ones built from them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .appview import AppView
from .errors import ConfigurationError, InvalidJobState, JobNotFound
from .job import JobInfo, JobState, job_info
from .listing import JobPage, PeriodicInfo, page_jobs, periodic_infos
from .storage.backend import Arg, Backend

LISTABLE = ("queued", "scheduled", "active", "waiting", "stalled", "failed", "succeeded", "cancelled", "skipped",
            "expired")


@dataclass(frozen=True)
class QueueInfo:
    """One queue as ``app.control.queues()`` lists it."""

    name: str
    paused: bool
    depth: int  # jobs ready to run
    held: int  # jobs its flow limits hold back (docs/flow-control.md)


def _queue_name(queue: str) -> str:
    if not isinstance(queue, str) or not queue or any(c in queue for c in " :{}"):
        raise ConfigurationError(f"queue must be a non-empty name without spaces, ':' or braces, not {queue!r}")
    return queue


class JobControl:
    """Job control of an app; ``backend``: of that storage alone (one queue's
    slot in the ``queue`` key layout). Without it, in that layout, a call on
    a job goes to the job's slot and a listing goes over every slot."""

    def __init__(self, app: AppView, backend: Backend | None = None, queue: str | None = None) -> None:
        self.app = app
        self._fixed = backend
        self.queue = queue  # the queue whose slot ``backend`` is
        self._fan = backend is None and app.settings.key_layout == "queue"

    @property
    def _b(self) -> Backend:
        return self._fixed if self._fixed is not None else self.app.backend

    def _sub(self, queue: str) -> JobControl:
        """Job control of ``queue``'s storage."""
        return JobControl(self.app, self.app.slots.queue(queue), queue)

    def _subs(self, queue: str | None = None) -> list[JobControl]:
        """Job control of every storage (of ``queue``'s alone, its shards', when given)."""
        if not self._fan:
            return [self]
        return [self._sub(q) for q in (self.app.slots.shards(queue) if queue else self.app.slots.queues())]

    def _named(self, queue: str | None) -> str | None:
        """``queue`` as this control's storage names it (a shard's own name)."""
        return self.queue if queue and self.queue else queue

    @property
    def _ttl_ms(self) -> int:
        return int(self.app.settings.succeeded_ttl * 1000)

    # ---------------------------------------------------------------- one job

    def cancel(self, job_id: str, force: bool = False, queue: str | None = None) -> str:
        return self._run("cancel", job_id, force=force, queue=queue)

    def cancel_args(self, force: bool = False) -> tuple[int, int, int]:
        """The cancel script's arguments after the job id (see cancel.lua)."""
        return 1 if force else 0, self._ttl_ms, self.app.settings.done_max

    def requeue(self, job_id: str, front: bool = False, queue: str | None = None) -> str:
        return self._run("requeue", job_id, front=front, queue=queue)

    def stall(self, job_id: str, queue: str | None = None) -> str:
        return self._run("stall", job_id, queue=queue)

    def unstall(self, job_id: str, queue: str | None = None) -> str:
        return self._run("unstall", job_id, queue=queue)

    def retract(self, job_id: str, queue: str | None = None) -> str:
        return self._run("retract", job_id, queue=queue)

    def delete(self, job_id: str, queue: str | None = None) -> str:
        return self._run("delete", job_id, queue=queue)

    def script_call(self, operation: str, *, force: bool = False, front: bool = False) -> tuple[str, tuple[Arg, ...]]:
        """The script of a one-job ``operation`` and its arguments after the
        job id: what the calls above and the async ones of :class:`Job` send."""
        if operation == "cancel":
            return "cancel", self.cancel_args(force)
        if operation == "requeue":
            return "requeue", (1 if front else 0,)
        if operation in ("stall", "unstall"):
            return operation, ()
        if operation in ("retract", "delete"):
            return "remove", (operation,)
        raise ValueError(f"unknown job operation {operation!r}")

    def _run(self, operation: str, job_id: str, *, force: bool = False, front: bool = False,
             queue: str | None = None) -> str:
        name, args = self.script_call(operation, force=force, front=front)
        b = self.app.slots.of(job_id, queue) if self._fan else self._b
        return b.control(name, job_id, *args, operation=operation)

    # ---------------------------------------------------------------- queues

    def pause_queue(self, queue: str) -> None:
        """Workers take no new job from ``queue`` until it is resumed (running
        jobs finish; it still takes enqueues). Kept on the server: a pause
        outlives worker and server restarts."""
        for sub in self._subs(_queue_name(queue)):
            sub._b.pause_queue(sub._named(queue) or queue)

    def resume_queue(self, queue: str) -> None:
        for sub in self._subs(_queue_name(queue)):
            sub._b.resume_queue(sub._named(queue) or queue)

    def queues(self) -> list[QueueInfo]:
        """Every known queue with whether it is paused, its ready depth and its held jobs."""
        if self._fan:
            return sorted((q for sub in self._subs() for q in sub.queues()), key=lambda q: q.name)
        b = self._b
        names = b.queue_names()
        figures, paused, held = b.queue_figures(names), b.paused_queues(names), b.held_counts(names)
        return [QueueInfo(q, paused[q], sum(figures[q][0].values()), held[q]) for q in names]

    # ---------------------------------------------------------------- listings

    def job_ids(self, state: str, queue: str | None = None, limit: int = 100) -> list[str]:
        """Ids of up to ``limit`` jobs in ``state`` (of ``queue``), as listed by
        :meth:`list_jobs` (newest first for finished ones)."""
        return [info.id for info in self.list_jobs(state, queue=queue, limit=limit)]

    def _active_ids(self) -> list[str]:
        """Ids of the jobs every registered worker holds."""
        b = self._b
        return [j.decode() for _info, jobs in b.worker_details([w for w, _ in b.workers()]) for j in jobs]

    def _index_key(self, state: str) -> str:
        """The sorted set indexing ``state``: succeeded, cancelled and skipped share the done index."""
        k = self._b.keys
        return {"scheduled": k.schedule, "stalled": k.stalled, "failed": k.failed}.get(state, k.done)

    def list_jobs(self, state: str, queue: str | None = None, task: str | None = None,
                  limit: int = 100) -> list[JobInfo]:
        """Jobs in ``state``, filtered by queue and task."""
        if self._fan:
            out: list[JobInfo] = []
            for sub in self._subs(queue):
                out += sub.list_jobs(state, queue=sub._named(queue), task=task, limit=limit - len(out))
                if len(out) >= limit:
                    break
            return out
        batch = limit if not (queue or task) else max(limit * 10, 1000)
        out = []
        seen: set[str] = set()  # the index may shift between pages
        for ids in self._id_pages(state, queue, batch):
            for jid, rec in zip(ids, self._b.job_records(ids)):
                if jid in seen or rec is None or rec.state != state:
                    continue
                seen.add(jid)
                info = job_info(rec)
                if (queue and info.queue != queue) or (task and info.task != task):
                    continue
                out.append(info)
                if len(out) >= limit:
                    return out
        return out

    def page(self, state: str, *, queue: str | None = None, task: str | None = None,
             error_type: str | None = None, cursor: str = "", limit: int = 50, budget: int = 5000) -> JobPage:
        """One page of jobs in ``state`` matching the filters, from ``cursor``
        (a previous page's ``next_cursor``; "" for the first), reading at most
        ``budget`` index entries (see ``taskq.listing``)."""
        if state not in LISTABLE:
            raise ConfigurationError(f"unknown state {state!r}; one of: {', '.join(LISTABLE)}")
        if self._fan:
            return self._fan_page(state, queue, task, error_type, cursor, limit, budget)
        return page_jobs(self, state, queue=queue, task=task, error_type=error_type, cursor=cursor,
                         limit=limit, budget=budget)

    def _fan_page(self, state: str, queue: str | None, task: str | None, error_type: str | None,
                  cursor: str, limit: int, budget: int) -> JobPage:
        """:meth:`page` over the queues' slots one after the other; the cursor
        is ``<slot index>.<that slot's cursor>``."""
        subs = self._subs(queue)
        at, _, inner = cursor.partition(".") if cursor else ("0", "", "")
        if not at.isdigit():
            raise ConfigurationError(f"bad cursor {cursor!r}: pass back a page's next_cursor")
        i, examined = int(at), 0
        jobs: list[JobInfo] = []
        while i < len(subs) and len(jobs) < limit and examined < budget:
            page = subs[i].page(state, queue=subs[i]._named(queue), task=task, error_type=error_type, cursor=inner,
                                limit=limit - len(jobs), budget=budget - examined)
            jobs += page.jobs
            examined += page.examined
            if page.next_cursor is not None:
                return JobPage(state, jobs, cursor, f"{i}.{page.next_cursor}", None, examined)
            i, inner = i + 1, ""
        return JobPage(state, jobs, cursor, f"{i}." if i < len(subs) else None, None, examined)

    def periodics(self) -> list[PeriodicInfo]:
        """The app's periodic tasks with their last and next tick."""
        return periodic_infos(self.app)

    def _id_pages(self, state: str, queue: str | None, batch: int) -> Iterator[list[str]]:
        """Candidate ids for :meth:`list_jobs`, in pages. An index (scheduled,
        stalled, failed, and the done index that succeeded, cancelled and
        skipped jobs share) is read on page by page until it ends, so jobs of
        the state behind others (another state, queue or task) are found;
        the ready lists of queued jobs, the leases of active ones and a scan
        of the job hashes for waiting ones likewise."""
        if state == "queued":
            for q in [queue] if queue else self._b.queue_names():
                yield from self._b.ready_id_pages(q, batch)
            return
        if state == "active":
            ids = self._active_ids()
            for i in range(0, len(ids), batch):
                yield ids[i:i + batch]
            return
        if state == "waiting":
            page: list[str] = []
            for jid, st in self._b.job_states():
                if st == "waiting":
                    page.append(jid)
                    if len(page) >= batch:
                        yield page
                        page = []
            if page:
                yield page
            return
        if state not in LISTABLE:
            raise ConfigurationError(f"unknown state {state!r}; one of: {', '.join(LISTABLE)}")
        key = self._index_key(state)
        if key == self._b.keys.done:
            batch *= 4
        offset = 0
        while True:
            ids = self._b.zset_ids(key, batch, newest_first=state != "scheduled", offset=offset)
            if ids:
                yield ids
            if len(ids) < batch:
                return
            offset += len(ids)

    # ---------------------------------------------------------------- failed jobs

    def failed_jobs(self, task: str | None = None, queue: str | None = None,
                    error_type: str | None = None, limit: int = 10_000) -> list[JobInfo]:
        """Failed jobs, newest first, with their error history."""
        out = []
        for info in self.list_jobs("failed", queue=queue, task=task, limit=limit):
            if error_type and (not info.errors or info.errors[-1].get("type") != error_type):
                continue
            out.append(info)
        return out

    def _each_failed(self, task: str | None, queue: str | None, error_type: str | None) -> Iterator[str]:
        # every job of the index: it may hold more than failed_jobs()'s default
        # limit (failed_max above it, and 5 % over the cap between trims)
        limit = max(sum(sub._b.zcard(sub._b.keys.failed) for sub in self._subs(queue)), 1)
        for info in self.failed_jobs(task=task, queue=queue, error_type=error_type, limit=limit):
            yield info.id

    def requeue_failed(self, task: str | None = None, queue: str | None = None,
                       error_type: str | None = None) -> int:
        """Requeue failed jobs matching the filters (all when none); returns the count.
        A server error (down, out of memory) raises: the jobs not reached stay failed."""
        n = 0
        for jid in self._each_failed(task, queue, error_type):
            try:
                self.requeue(jid)
                n += 1
            except (InvalidJobState, JobNotFound):  # requeued meanwhile, or deleted: skip it
                continue
        return n

    def purge_failed(self, task: str | None = None, queue: str | None = None,
                     error_type: str | None = None) -> int:
        """Delete failed jobs matching the filters; returns the count.
        A server error (down, out of memory) raises: the jobs not reached stay."""
        n = 0
        for jid in self._each_failed(task, queue, error_type):
            try:
                self.delete(jid)
                n += 1
            except (InvalidJobState, JobNotFound):  # running again meanwhile, or deleted: skip it
                continue
        return n

    def purge_queue(self, queue: str) -> int:
        """Delete every queued job of ``queue``; returns the count."""
        _queue_name(queue)
        if self._fan:
            return sum(sub.purge_queue(sub.queue or queue) for sub in self._subs(_queue_name(queue)))
        total = 0
        while True:
            n = self._b.purge_queue(queue)
            total += n
            if n == 0 and not self._b.queue_levels(queue):
                return total
            if n == 0:
                continue

    def states(self) -> tuple[str, ...]:
        return tuple(s.value for s in JobState)
