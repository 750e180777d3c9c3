"""Turning a canvas (or a job with ``depends_on``) into the rows of
``enqueue_flow``: one job per signature, each naming the jobs that wait for
it, plus a handle job (never run) that finishes with the workflow.

Rows go parents first (a job's parents exist before it can finish); the
last call seals every parent, so nothing is released while the workflow is
still being sent. Member ids are fresh; unique keys do not apply to them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from . import codec
from .canvas import PLACEMENT, Canvas, Chain, Chord, Group, Signature
from .enqueue import JobBuilder, new_job_id
from .errors import ConfigurationError
from .flowsend import send_dependent, send_flow
from .job import Job, JobApp
from .storage.records import EnqueueRequest
from .storage.workflows import FlowRow
from .workflow import FLOW_MARK, SENDS_VALUE, TAKES_VALUE, Workflow

POLICIES = ("cancel", "run")


class Planner:
    """Builds the rows of one workflow."""

    def __init__(self, app: JobApp, defaults: Mapping[str, Any] | None = None) -> None:
        self.app = app
        self.defaults = dict(defaults or {})
        self.rows: list[FlowRow] = []  # in creation order: dependencies before dependents
        self._builders: dict[tuple[str, str, int], tuple[JobBuilder, str | bytes]] = {}
        s = app.settings
        self.ttls = f"{int(s.succeeded_ttl * 1000)}:{int(s.failed_ttl * 1000)}"

    def _builder(self, sig: Signature, mark: int) -> tuple[JobBuilder, str | bytes]:
        call = {**self.defaults, **{k: v for k, v in sig.options.items() if k not in PLACEMENT}}
        if sig.options.get("countdown") is not None:
            call["delay"] = sig.options["countdown"]
        key = (sig.task, repr(sorted(call.items(), key=lambda kv: kv[0])), mark)
        got = self._builders.get(key)
        if got is None:
            builder = JobBuilder(self.app.settings, sig.task, self.app.options_for(sig.task).merged(call), call)
            blob = builder.opts_blob
            stored = codec.loads(blob) if isinstance(blob, bytes) and blob else {}
            if mark:
                stored[FLOW_MARK] = mark
            got = self._builders[key] = (builder, codec.dumps(stored) if stored else "")
        return got

    def job(self, sig: Signature, after: list[FlowRow], many: bool, mark: int = SENDS_VALUE,
            on_failure: str = "cancel") -> FlowRow:
        """The row of one signature waiting for ``after`` (their values as a list if ``many``)."""
        values = ""
        if after and not sig.immutable:
            values = "all" if many else "one"
        if values:
            mark |= TAKES_VALUE
        builder, opts = self._builder(sig, mark)
        req = builder.build(sig.args, sig.kwargs, job_id=sig.options.get("job_id"), eta=sig.options.get("eta"))
        row = FlowRow(req._replace(options=opts, unique_key="", unique_ttl_ms=0), dependency_count=len(after),
                      values=values, on_failure=on_failure, ttls=self.ttls)
        self._wait(row, after)
        self.rows.append(row)
        return row

    @staticmethod
    def _wait(row: FlowRow, after: list[FlowRow]) -> None:
        for i, dep in enumerate(after):
            if dep.parents is None:
                dep.parents = []
            dep.parents.append((row.job.id, i))

    def add(self, canvas: Canvas, after: list[FlowRow], many: bool) -> tuple[list[FlowRow], bool]:
        """Rows for ``canvas`` after ``after``: its last jobs, and whether its value is a list."""
        if isinstance(canvas, Signature):
            return [self.job(canvas, after, many)], False
        if isinstance(canvas, Chain):
            for step in canvas.steps:
                after, many = self.add(step, after, many)
            return after, many
        if isinstance(canvas, Chord):
            after, many = self.add(canvas.header, after, many)
            return self.add(canvas.body, after, many)
        if isinstance(canvas, Group):
            ends: list[FlowRow] = []
            for member in canvas.members:
                last, _ = self.add(member, after, many)
                if len(last) != 1:
                    raise ConfigurationError("a group member must end in one job (a group directly in a group, or "
                                             "a chain ending in a group, has several): make it a chord")
                ends.extend(last)
            return ends, True
        raise ConfigurationError(f"not a canvas: {canvas!r}")

    def handle(self, kind: str, ends: list[FlowRow], many: bool) -> FlowRow:
        """The workflow's handle: waits for its last jobs, never runs."""
        first = self.rows[0].job if self.rows else None
        req = EnqueueRequest(new_job_id(), f"taskq.{kind}", first.queue if first else "default", 0,
                             codec.encode_args([], {}), "", 0, 0, "", 0, 0, "", "", "", "", "")
        row = FlowRow(req, kind=kind, dependency_count=len(ends), values="all" if many else "one",
                      on_failure="collect", ttls=self.ttls)
        self._wait(row, ends)
        return row


def _kind(canvas: Canvas) -> str:
    return {Chain: "chain", Group: "group", Chord: "chord"}.get(type(canvas), "chain")


def launch(app: JobApp, canvas: Canvas, *, link_error: Signature | None = None,
           defaults: Mapping[str, Any] | None = None) -> Workflow[Any]:
    """Enqueue a canvas; returns its handle."""
    plan = Planner(app, defaults)
    ends, many = plan.add(canvas, [], False)
    handle = plan.handle(_kind(canvas), ends, many)
    for row in plan.rows:
        row.handle = handle.job.id
    head = [handle]
    if link_error is not None:
        if not isinstance(link_error, Signature):
            raise ConfigurationError("link_error must be a signature (task.s(...) or task.si(...))")
        err = plan.job(link_error, [], False, mark=0, on_failure="onfail")
        plan.rows.pop()
        if not link_error.immutable:
            err.values = "err"
            builder, opts = plan._builder(link_error, TAKES_VALUE)
            err.job = err.job._replace(options=opts)
        err.dependency_count = 1
        Planner._wait(err, [handle])
        head.insert(0, err)
    rows = head + plan.rows[::-1]  # parents first
    waiting = [r.job.id for r in rows if r.dependency_count or r.kind]
    queues = {r.job.queue for r in rows}
    if app.slots.per_queue:
        if len(queues) == 1:  # a sharded queue: the whole workflow in one shard
            shard = app.slots.place(handle.job).queue
            for r in rows:
                r.job = r.job._replace(queue=shard)
        else:  # each job in its queue's slot (one of its shards)
            for r in rows:
                r.job = app.slots.place(r.job)
    for r in rows:
        app.slots.check_resource(r.job)
    send_flow(app, rows, waiting)
    return Workflow(app, handle.job.id, task=handle.job.task, queue=handle.job.queue)


def enqueue_dependent(app: JobApp, req: EnqueueRequest, depends_on: Iterable[Job[Any] | str],
                      on_dependency_failure: str = "cancel") -> Job[Any]:
    """Create one job that waits until every job of ``depends_on`` succeeded
    (``JobNotFound`` if one does not exist: nothing is enqueued)."""
    if on_dependency_failure not in POLICIES:
        raise ConfigurationError(f"on_dependency_failure must be one of {', '.join(POLICIES)}, "
                                 f"not {on_dependency_failure!r}")
    ids: list[str] = []
    for dep in depends_on:
        jid = dep.id if isinstance(dep, Job) else dep
        if not isinstance(jid, str) or not jid:
            raise ConfigurationError(f"depends_on takes jobs or job ids, not {dep!r}")
        if jid not in ids:
            ids.append(jid)
    if not ids:
        raise ConfigurationError("depends_on needs at least one job")
    s = app.settings
    row = FlowRow(req, dependency_count=len(ids), on_failure=on_dependency_failure,
                  ttls=f"{int(s.succeeded_ttl * 1000)}:{int(s.failed_ttl * 1000)}",
                  existing=[(jid, i) for i, jid in enumerate(ids)])
    if len(app.slots.shards(req.queue)) > 1:  # a sharded queue: the shard of the jobs it waits for
        app.slots.of(ids[0])
        found = app.slots.queue_of(ids[0])
        req = req._replace(queue=found if found in app.slots.shards(req.queue) else app.slots.place(req).queue)
        row.job = req
    app.slots.check_resource(req)
    send_dependent(app, row, ids)
    return Job(app, req.id, task=req.task, state="waiting", queue=req.queue)

