"""Handles on workflows: ``Workflow`` is a :class:`~taskq.job.Job` handle
(``app.job(id)`` returns one) that also knows a chain's, group's or
chord's members. A workflow's handle is a job that never runs: it finishes
with the workflow (succeeded with its value, or failed/cancelled naming the
step that failed), so ``result()``, ``state``, ``wait()`` and ``on_finish``
work on it as on any job; ``cancel()`` cancels every member not yet finished.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypeVar

from . import codec
from .errors import TaskFailed
from .info import decode_error, decode_errors
from .job import Job, JobState, not_found
from .storage.backend import Backend
from .storage.records import JobRecord

R = TypeVar("R")
# The per-call option that marks a workflow's job for the worker (see flowplan).
FLOW_MARK = "wf"
SENDS_VALUE = 1  # its value is sent with its outcome (the workflow needs it)
TAKES_VALUE = 2  # its first argument was put there by the server (its signature covers the rest)


@dataclass(frozen=True)
class MemberOutcome:
    """One member's end, as ``Workflow.results()`` reports it."""

    id: str
    state: str  # succeeded | failed | cancelled | skipped, or a live state
    value: Any = None
    error: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return self.state == JobState.SUCCEEDED


@dataclass(frozen=True)
class TreeNode:
    """A job of a workflow and the jobs it waits for (``taskq job show``)."""

    id: str
    task: str
    state: str
    waits_for: list[TreeNode]


class Workflow(Job[R]):
    """A job handle with the workflow operations."""

    def result(self, timeout: float | None = None) -> R:
        """The workflow's value (chain: its last step's; group: the list of
        its members' in member order; chord: the callback's). A failure raises
        ``TaskFailed`` naming the step that failed (``job_id``, and
        ``workflow`` the handle's id)."""
        try:
            return super().result(timeout)
        except TaskFailed as exc:
            rec = self.store.job_record(self.id)
            step = rec.cause if rec is not None and rec.cause else exc.job_id
            err = TaskFailed(step, exc.state, exc.exc_type, exc.message, exc.traceback)
            err.workflow = self.id  # type: ignore[attr-defined]
            raise err from None

    def _stores(self) -> list[Backend]:
        """The storage of the handle and of each other queue holding jobs of
        its workflow (the ``queue`` key layout)."""
        rec = self.store.job_record(self.id)
        others = rec.workflow_queues if rec is not None else ()
        return [self.store, *(self.app.slots.queue(q) for q in others)]

    def _records(self, ids: list[str], stores: list[Backend]) -> list[JobRecord | None]:
        """The records of jobs ``ids``, wherever of ``stores`` each is."""
        found: list[JobRecord | None] = [None] * len(ids)
        for b in stores:
            missing = [i for i, r in enumerate(found) if r is None]
            if not missing:
                break
            for i, rec in zip(missing, b.job_records([ids[i] for i in missing])):
                found[i] = rec
        return found

    def members(self) -> list[str]:
        """The ids of the workflow's jobs, in creation order (empty for a plain
        job; across queues' slots, those of each slot in turn)."""
        return self._members(self._stores())

    def _members(self, stores: list[Backend]) -> list[str]:
        return [m for b in stores for m in b.links(self.id, limit=1 << 30).members[::-1]]  # stored parents first

    def results(self, timeout: float | None = None) -> list[MemberOutcome]:
        """Each member's outcome in member order (a group's members, a chain's
        or chord's last jobs), once the workflow finished (waits ``timeout``)."""
        self.wait(timeout)
        b, stores = self.store, self._stores()
        members = self._members(stores)
        order: list[tuple[int, str]] = []
        for jid, rec in zip(members, self._records(members, stores)):
            for pid, idx in _parents(rec.parents if rec else None):
                if pid == self.id:
                    order.append((idx, jid))
        order.sort()
        outcomes = b.dependency_outcomes(self.id)
        states = self._records([jid for _, jid in order], stores)
        out: list[MemberOutcome] = []
        for (idx, jid), rec in zip(order, states):
            if str(idx) in outcomes:
                out.append(MemberOutcome(jid, JobState.SUCCEEDED.value, codec.loads(outcomes[str(idx)])))
                continue
            state = outcomes.get(f"x{idx}", b"").decode() or (rec.state if rec else "expired")
            error = None
            if rec is not None and rec.errors:
                errs = decode_errors(rec.errors)
                error = errs[-1] if errs else None
            out.append(MemberOutcome(jid, state, None, error))
        return out

    def tree(self, limit: int = 200) -> TreeNode:
        """The workflow as a tree: this job and, under each job, the jobs it
        waits for (at most ``limit`` jobs read)."""
        rec = self.store.job_record(self.id)
        if rec is None:
            raise not_found(self.app, self.id)
        stores = self._stores()
        ids = [m for b in stores for m in b.links(self.id, limit=limit).members][:limit]
        recs = {jid: r for jid, r in zip(ids, self._records(ids, stores)) if r is not None}
        recs[self.id] = rec
        under: dict[str, list[tuple[int, str]]] = {}
        for jid in [*ids, self.id]:
            r = recs.get(jid)
            for pid, idx in _parents(r.parents if r else None):
                under.setdefault(pid, []).append((idx, jid))

        def node(jid: str, depth: int) -> TreeNode:
            r = recs[jid]
            kids = sorted(under.get(jid, [])) if depth < 50 else []
            return TreeNode(jid, r.task, r.state, [node(k, depth + 1) for _, k in kids if k in recs])

        return node(self.id, 0)


def _parents(raw: bytes | None) -> list[tuple[str, int]]:
    if not raw:
        return []
    try:
        flat = codec.loads(raw)
    except ValueError:
        return []
    if not isinstance(flat, list):
        return []
    out = []
    for i in range(0, len(flat) - 1, 2):
        at = flat[i + 1]  # a parent in another queue's slot: [index, queue]
        out.append((str(flat[i]), int(at[0] if isinstance(at, list) else at)))
    return out


__all__ = ["FLOW_MARK", "MemberOutcome", "TreeNode", "Workflow", "decode_error"]
