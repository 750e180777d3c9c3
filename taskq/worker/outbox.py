"""The deliverer of a queue's slot (the ``queue`` key layout): applies
what that slot's scripts left in its outbox for other slots -- the end of
a workflow step whose parent waits in another queue, the cancel of a
workflow whose jobs span queues, the expiry of a handle's member lists --
to the slots they name (``lua/deliver.lua``), then removes them.

Each entry is applied at least once and counts once: a deliverer that dies
after applying and before removing leaves it for the next pass, which
applies it again to no effect. The slot's scheduler runs it on every pass,
woken by the script that wrote the entry.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import msgpack

from ..errors import TaskQError
from ..storage.workflows import OUTBOX_BATCH

if TYPE_CHECKING:
    from ..appview import AppView
    from ..storage.backend import Backend

log = logging.getLogger("taskq.scheduler")


def entry_queue(entry: bytes) -> str | None:
    """The queue whose slot an outbox entry goes to (None: not an entry)."""
    try:
        head = msgpack.unpackb(entry, raw=True)
    except (ValueError, msgpack.ExtraData, TypeError):
        return None
    if not isinstance(head, list) or not head or not isinstance(head[0], bytes):
        return None
    return head[0].decode("utf-8", "replace")


def deliver_outbox(app: AppView, store: Backend) -> int:
    """Apply and remove ``store``'s outbox entries, batch by batch, until it
    is empty; returns how many were applied."""
    s, slots = app.settings, app.slots
    caps = (s.done_max, s.failed_max, s.error_history)  # of the scripts that finish jobs
    done = 0
    while True:
        entries = store.outbox(OUTBOX_BATCH)
        if not entries:
            return done
        by_queue: dict[str, list[bytes]] = {}
        applied: list[bytes] = []
        for entry in entries:
            queue = entry_queue(entry)
            if queue is None:
                log.error("dropped an outbox entry that is not one: %r", entry[:80])
                applied.append(entry)
                continue
            by_queue.setdefault(queue, []).append(entry)
        stuck = False
        for queue, batch in by_queue.items():
            try:
                slots.queue(queue).deliver(batch, caps)
            except TaskQError as exc:  # that slot's server is away: its entries wait, the others go
                log.warning("cannot deliver %d outbox entries to queue %r yet (%s)", len(batch), queue, exc)
                stuck = True
            else:
                applied.extend(batch)
        store.outbox_done(applied)
        done += len(applied)
        if stuck or len(entries) < OUTBOX_BATCH:
            return done


def deliver_now(app: AppView, store: Backend) -> None:
    """What a worker does when its settle left entries in ``store``'s
    outbox: apply them at once (a workflow's next job in another queue is
    released without waiting for the scheduler). Never raises: what fails
    is left to the slot's scheduler."""
    try:
        deliver_outbox(app, store)
    except TaskQError as exc:
        log.debug("outbox left to the scheduler: %s", exc)
