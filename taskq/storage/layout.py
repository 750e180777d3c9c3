"""Where a namespace's keys live: its key layout and the registry of queue slots.

Two layouts (the app setting ``key_layout``):

- ``namespace``: every key of namespace ``ns`` starts with ``{ns}:``, one
  hash slot. A script may touch any of them, so a workflow or a resource
  may span queues. On a cluster the namespace lives on one master.
- ``queue``: each queue ``q`` is a complete namespace of its own,
  ``{ns:q}:`` (its jobs, ready lists, schedule, leases, flow limits,
  indexes, stats, workers' leases and the reapers' watch), so every script
  still touches one slot and a cluster spreads the queues over its masters.
  ``{ns}`` keeps only this registry: the layout marker and the set of
  queues that have a slot and which queue each resource lock lives in
  (``{ns}:resources``: a lock is in one slot, so a resource may be used by
  one queue only), written with idempotent commands (``SET NX``, ``SADD``,
  ``HSETNX``), never from a job script.

A namespace in the ``namespace`` layout shows its keys under ``{ns}:``
(``queues``, ``sched``, ``failed``...); one in the ``queue`` layout has
``{ns}:layout`` = ``queue``. ``taskq migrate`` moves the first to the second.
"""

from __future__ import annotations

from .connection import Connection, translate_errors

LAYOUTS = ("namespace", "queue")
QUEUE_LAYOUT = b"queue"
# Keys that only a namespace in the one-slot layout writes under {ns}:
ONE_SLOT_MARKS = ("queues", "sched", "failed", "done", "stalled", "workers", "cron", "st:c")


def slot_namespace(namespace: str, queue: str) -> str:
    """The namespace of ``queue``'s slot in the ``queue`` layout (names have no ':')."""
    return f"{namespace}:{queue}"


class Registry(Connection):
    """The ``{ns}`` slot of a namespace: its layout marker and queue slots."""

    def layout_found(self) -> str:
        """``queue``, ``namespace`` (keys of the one-slot layout are there) or
        ``""`` (an empty namespace)."""
        k = self.keys
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.get(k.layout)
            pipe.exists(*[k.prefix + m for m in ONE_SLOT_MARKS])
            marker, old = pipe.execute()
        if marker == QUEUE_LAYOUT:
            return "queue"
        return "namespace" if int(old) else ""

    def claim_queue_layout(self) -> None:
        """Mark an empty namespace as laid out per queue (idempotent)."""
        with translate_errors(self.url):
            self.client.set(self.keys.layout, QUEUE_LAYOUT, nx=True)

    def register_slot(self, queue: str) -> None:
        with translate_errors(self.url):
            self.client.sadd(self.keys.slot_queues, queue)

    def claim_resource(self, resource: str, queue: str) -> str:
        """Record that ``resource`` is used in ``queue``'s slot (``HSETNX``);
        returns the queue that holds it (another one: a conflict)."""
        k = self.keys.prefix + "resources"
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.hsetnx(k, resource, queue)
            pipe.hget(k, resource)
            _, holder = pipe.execute()
        return holder.decode() if holder else queue

    def slot_queues(self) -> list[str]:
        with translate_errors(self.url):
            return sorted(q.decode() for q in self.client.smembers(self.keys.slot_queues))
