"""Sending a workflow's rows to storage: in one slot (one call per 1,000
jobs, the last sealing it), or, in the ``queue`` key layout with jobs in
several queues, to each queue's slot in turn.

Across slots a job's parent in another slot is named with its queue; the
parent is created first, with that job already in its pending set, and
the job's end reaches it through the outbox of the job's slot (see
``worker/outbox.py``). Rows go by depth, each depth's rows grouped by slot,
so every parent exists before the jobs it waits for; each slot's parents
are sealed once every row is written, so nothing is released early.
"""

from __future__ import annotations

from itertools import groupby

from .errors import JobNotFound
from .job import JobApp
from .storage.workflows import FlowRow


def send_flow(app: JobApp, rows: list[FlowRow], seal: list[str]) -> None:
    """Create ``rows`` (parents first) and seal the jobs ``seal``."""
    queues = {r.job.queue for r in rows}
    if not app.slots.per_queue or len(queues) == 1:
        store = app.slots.queue(rows[0].job.queue) if app.slots.per_queue else app.backend
        store.enqueue_flow(rows, seal)
        return
    where = {r.job.id: r.job.queue for r in rows}
    by_id = {r.job.id: r for r in rows}
    depth: dict[str, int] = {}
    for r in rows:  # a row's parents come before it
        links: list[tuple[str, int] | tuple[str, int, str]] = []
        for link in r.parents or []:
            pid, index = link[0], link[1]
            if where[pid] == r.job.queue:
                links.append((pid, index))
            else:
                links.append((pid, index, where[pid]))
                parent = by_id[pid]
                if parent.remote is None:
                    parent.remote = []
                parent.remote.append(r.job.id)
        r.parents = links or None
        depth[r.job.id] = 1 + max((depth[p[0]] for p in links), default=-1)
    for r in rows:
        if r.kind:
            r.other_queues = " ".join(sorted({m.job.queue for m in rows if m.handle == r.job.id} - {r.job.queue}))
    ordered = sorted(rows, key=lambda r: (depth[r.job.id], r.job.queue))
    for queue, run in groupby(ordered, key=lambda r: r.job.queue):
        app.slots.queue(queue).enqueue_flow(list(run), [])
    for queue in sorted(queues):
        mine = [jid for jid in seal if where.get(jid) == queue]
        if mine:
            app.slots.queue(queue).enqueue_flow([], mine)


def send_dependent(app: JobApp, row: FlowRow, ids: list[str]) -> None:
    """Create one job waiting for the existing jobs ``ids`` (``row.existing``
    names them with their index), those of other queues' slots included."""
    req = row.job
    store = app.slots.queue(req.queue) if app.slots.per_queue else app.backend
    remote: list[tuple[str, int, str]] = []
    if app.slots.per_queue:
        for i, jid in enumerate(ids):
            if app.slots.of(jid) is not store:
                queue = app.slots.queue_of(jid)
                if queue is None:
                    raise JobNotFound(f"no job {jid!r} to depend on (never created, deleted, or expired); "
                                      "nothing was enqueued")
                remote.append((jid, i, queue))
    if not remote:
        store.enqueue_flow([row], [req.id], existing=ids)
        return
    far = {jid for jid, _, _ in remote}
    row.existing = [(jid, i) for jid, i in row.existing or [] if jid not in far] or None
    row.remote = [jid for jid, _, _ in remote]
    store.enqueue_flow([row], [], existing=[jid for jid in ids if jid not in far])
    for jid, i, queue in remote:
        if not app.slots.queue(queue).attach(jid, req.id, i, req.queue):
            store.control("remove", req.id, "delete", operation="delete")
            raise JobNotFound(f"no job {jid!r} to depend on (deleted or expired meanwhile); nothing was enqueued")
    store.enqueue_flow([], [req.id])
