"""Which storage serves a queue or a job: the app's key layout at work.

In the ``namespace`` layout (the default) one :class:`Backend` serves all of
a namespace. In the ``queue`` layout (``storage/layout.py``) each queue has
a :class:`Backend` of its own, on the slot ``{ns:queue}``; the app's main
backend (``{ns}``) keeps the registry of the queues that have one. A job is
found in the slot of its queue: a handle returned by an enqueue knows it; a
handle made from an id alone (``app.job(id)``) asks the registered slots
once and remembers the answer.
"""

from __future__ import annotations

import logging
import threading
import zlib
from typing import TYPE_CHECKING, Protocol

from .errors import ConfigurationError
from .storage.aio import AsyncBackend
from .storage.backend import Backend
from .storage.layout import slot_namespace
from .storage.migrate import Migration, Moved

if TYPE_CHECKING:
    from .options import AppSettings, TaskOptions
    from .storage.records import EnqueueRequest


class AppView(Protocol):
    """What the slots need of an app (``taskq.appview`` names this module's class)."""

    name: str
    settings: AppSettings

    @property
    def backend(self) -> Backend: ...

    def options_for(self, name: str) -> TaskOptions: ...

log = logging.getLogger("taskq")
KNOWN_IDS_MAX = 100_000  # job id -> queue answers remembered (then forgotten at once)


def layout_mismatch(app: AppView, found: str) -> str:
    """The error for an app whose ``key_layout`` is not the namespace's, or ''."""
    ns, want = app.settings.namespace, app.settings.key_layout
    if want == "queue" and found == "namespace":
        return (f"namespace {ns!r} holds jobs in the one-slot key layout, but app {app.name!r} is set to "
                f"key_layout='queue': stop its workers and run `taskq migrate {app.name}` (the module:app "
                f"you pass to `taskq worker`) to move them to a slot per queue")
    if want == "namespace" and found == "queue":
        return (f"namespace {ns!r} is laid out with a slot per queue: set key_layout='queue' for app "
                f"{app.name!r} (or TASKQ_KEY_LAYOUT=queue)")
    return ""


class Slots:
    """The backends of an app's queues (see the module docstring)."""

    def __init__(self, app: AppView) -> None:
        self.app = app
        self.per_queue = app.settings.key_layout == "queue"
        self._lock = threading.Lock()
        self._by_queue: dict[str, Backend] = {}
        self._async: dict[str, AsyncBackend] = {}
        self._known: dict[str, str] = {}  # job id -> queue
        self._resources: set[tuple[str, str]] = set()  # (resource, queue) known to be allowed
        self._checked = False
        self._registered: set[str] = set()

    def check(self, strict: bool = True) -> None:
        """Raise ``ConfigurationError`` if the namespace is in the other layout
        (``strict``: a worker or scheduler; a producer only logs it, and its
        jobs wait in their slots for ``taskq migrate``); mark an empty
        namespace as laid out per queue."""
        root = self.app.backend
        found = root.layout_found()
        problem = layout_mismatch(self.app, found)
        if problem and strict:
            raise ConfigurationError(problem)
        if problem:
            log.warning("%s; until then jobs enqueued here wait in their queues' slots", problem)
        elif self.per_queue and not found:
            root.claim_queue_layout()
        self._checked = True

    def queue(self, queue: str, register: bool = True) -> Backend:
        """The backend holding ``queue``'s jobs; ``register``: make sure its
        slot is in the registry first (once per process; a worker does it
        in its start-up retry loop instead, :meth:`register`)."""
        if not self.per_queue:
            return self.app.backend
        found = self._by_queue.get(queue)
        if found is None:
            with self._lock:
                if queue not in self._by_queue:
                    root = self.app.backend
                    self._by_queue[queue] = Backend(
                        root.url, slot_namespace(self.app.settings.namespace, queue),
                        retry_timeout=root.retry_timeout, durable_replicas=root.durable_replicas,
                        durable_timeout=root.durable_timeout)
                found = self._by_queue[queue]
        if register and queue not in self._registered:
            self.register(queue)
        return found

    def register(self, queue: str, strict: bool = False) -> None:
        """Put ``queue``'s slot in the registry (checking the namespace's layout first)."""
        if not self.per_queue:
            return
        if not self._checked or strict:
            self.check(strict=strict)
        self.app.backend.register_slot(queue)
        self._registered.add(queue)

    def aqueue(self, queue: str) -> AsyncBackend:
        """The asyncio adapter of :meth:`queue`."""
        sync = self.queue(queue)
        found = self._async.get(queue)
        if found is None or found.sync is not sync:
            found = self._async[queue] = AsyncBackend(sync)
        return found

    def shards(self, queue: str) -> list[str]:
        """The queues that serve ``queue``: its shards ``queue#0``... (``queue_shards``), or itself."""
        n = self.app.settings.queue_shards.get(queue)
        return [f"{queue}#{i}" for i in range(n)] if n else [queue]

    def place(self, req: EnqueueRequest, key: str | None = None) -> EnqueueRequest:
        """``req`` in the shard of its queue that ``key`` (else its unique key,
        its resource or its id) hashes to: a resend, a unique check and a
        resource's waiters always meet in one slot; random ids spread evenly.
        A resource used by another queue is refused (:meth:`check_resource`)."""
        if req.queue in self.app.settings.queue_shards:
            req = req._replace(queue=self.shard_of(req.queue, key or req.unique_key or req.resource or req.id))
        self.check_resource(req)
        return req

    def check_resource(self, req: EnqueueRequest) -> None:
        """Refuse a job whose resource lock is held in another queue's slot
        (a lock lives in one slot: it cannot exclude runs in two)."""
        if not self.per_queue or not req.resource or (req.resource, req.queue) in self._resources:
            return
        holder = self.app.backend.claim_resource(req.resource, req.queue)
        if holder != req.queue:
            raise ConfigurationError(
                f"resource {req.resource!r} is used by queue {holder!r}: with key_layout='queue' a resource lock "
                f"lives in one queue's slot, so jobs of queue {req.queue!r} cannot share it (use one queue for "
                f"the jobs of a resource)")
        self._resources.add((req.resource, req.queue))

    def shard_of(self, queue: str, key: str) -> str:
        """The shard of ``queue`` that ``key`` hashes to (``queue`` itself if it has none)."""
        n = self.app.settings.queue_shards.get(queue)
        return f"{queue}#{zlib.crc32(key.encode()) % n}" if n else queue

    def groups(self, queues: list[str]) -> list[tuple[Backend, list[str]]]:
        """The storages a worker serving ``queues`` (in priority order) claims
        from, each with its queues: one for all of them, or one per queue
        (and per shard of a sharded one)."""
        if not self.per_queue:
            return [(self.app.backend, list(queues))]
        return [(self.queue(s, register=False), [s]) for q in queues for s in self.shards(q)]

    def queues(self) -> list[str]:
        """The queues with a slot of their own (none in the namespace layout)."""
        return self.app.backend.slot_queues() if self.per_queue else []

    def all(self) -> list[Backend]:
        """Every backend holding jobs: each queue's slot, or the one backend."""
        if not self.per_queue:
            return [self.app.backend]
        return [self.queue(q) for q in self.queues()]

    def of(self, job_id: str, queue: str | None = None) -> Backend:
        """The backend holding job ``job_id`` (of ``queue`` when known). A job
        found nowhere is looked for in the first slot: the call then reports
        it as not found."""
        if not self.per_queue:
            return self.app.backend
        if queue:
            return self.queue(queue)
        known = self._known.get(job_id)
        if known is not None:
            return self.queue(known)
        for name in self.queues():
            backend = self.queue(name)
            if backend.job_state(job_id) is not None:
                self.remember(job_id, name)
                return backend
        slots = self.all()
        return slots[0] if slots else self.app.backend

    def queue_of(self, job_id: str) -> str | None:
        """The queue of a job :meth:`of` found, if known."""
        return self._known.get(job_id)

    def remember(self, job_id: str, queue: str) -> None:
        if len(self._known) >= KNOWN_IDS_MAX:
            self._known.clear()
        self._known[job_id] = queue

    def close(self) -> None:
        with self._lock:
            for backend in self._by_queue.values():
                backend.close()
            self._by_queue.clear()
            self._async.clear()
            self._registered.clear()
            self._checked = False


def migrate_to_queue_layout(app: AppView) -> Moved:
    """Move the app's namespace from the one-slot key layout to a slot per
    queue (``taskq migrate``; its workers stopped), then mark it so."""
    if app.settings.key_layout != "queue":
        raise ConfigurationError(f"app {app.name!r} is set to key_layout={app.settings.key_layout!r}: set "
                                 "key_layout='queue' (or TASKQ_KEY_LAYOUT=queue) to move its namespace to a slot "
                                 "per queue")
    root = app.backend
    now, timeout_ms = root.server_time_ms(), int(app.settings.heartbeat_timeout * 1000)
    live = [w for w, hb in root.workers() if now - hb < timeout_ms]
    if live:
        raise ConfigurationError(f"{len(live)} worker(s) of namespace {app.settings.namespace!r} are running "
                                 f"({', '.join(live[:3])}{'...' if len(live) > 3 else ''}): stop them first")
    slots = getattr(app, "slots", None) or Slots(app)

    def queue_of_task(name: str) -> str:
        return app.options_for(name).queue

    moved = Migration(root, slots.queue, queue_of_task).run()
    root.claim_queue_layout()
    return moved
