"""Moving a namespace from the one-slot key layout to a slot per queue.

Every key under ``{ns}:`` goes to the slot of the queue it belongs to
(``{ns:queue}:`` + the same name): a job's hash and its result, workflow
and unique-key entries to its job's queue; ready lists, levels, pauses and
flow-control keys to their queue; the indexes (``sched``, ``failed``,
``done``, ``stalled``), a worker's leases and a resource's waiters are split
by their jobs' queues; counters are added to the slot's. Keys are moved in
batches with ``DUMP`` / ``RESTORE ... REPLACE`` (expiry kept) and deleted
from ``{ns}`` once written, so a run that stops midway is finished by
running it again (only counters added before the stop may count twice).
No script spans slots: each step is an idempotent write to one slot.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from .backend import Backend
from .connection import translate_errors
from .migrate_links import rewrite_links

BATCH = 500
# key name (after the prefix) -> how the queue of its content is found
BY_QUEUE = ("q", "qp", "qn", "pz", "fp", "fh", "fr", "fs", "xp")  # "<kind>:<queue>[:...]"
BY_JOB = ("j", "r", "dp", "dv", "wm")  # "<kind>:<job id>"
INDEXES = ("sched", "failed", "done", "stalled")
DROPPED = ("schedw", "reaper", "layout", "slots")  # wake-up markers and watches start over in each slot


@dataclass
class Moved:
    """What a migration moved."""

    jobs: int = 0
    keys: int = 0
    queues: set[str] = field(default_factory=set)
    left: list[str] = field(default_factory=list)  # keys it does not know, left in place


class Migration:
    """One namespace's move (see the module docstring). ``slot(queue)``: the
    backend of a queue's slot; ``queue_of_task(name)``: where a periodic
    task's ticks and a task's histogram go; ``fallback``: the queue of
    entries whose job is gone."""

    def __init__(self, root: Backend, slot: Callable[[str], Backend], queue_of_task: Callable[[str], str],
                 fallback: str = "default") -> None:
        self.root = root
        self.slot = slot
        self.queue_of_task = queue_of_task
        self.fallback = fallback
        self.prefix = root.keys.prefix
        self.job_queue: dict[str, str] = {}
        self.done = Moved()

    # ---------------------------------------------------------------- helpers

    def _scan(self, start: str) -> Iterator[list[str]]:
        with translate_errors(self.root.url):
            batch: list[str] = []
            for raw in self.root.client.scan_iter(match=self.root.keys.scan_pattern(start), count=1000):
                batch.append(raw.decode())
                if len(batch) >= BATCH:
                    yield batch
                    batch = []
            if batch:
                yield batch

    def queue_of_job(self, job_id: str) -> str:
        found = self.job_queue.get(job_id)
        if found is None:
            with translate_errors(self.root.url):
                raw = self.root.client.hget(self.root.keys.job(job_id), "q")
            found = raw.decode() if raw else self.fallback
            self.job_queue[job_id] = found
        return found

    def _move(self, keys: list[str], queue_of: Callable[[str], str]) -> None:
        """DUMP/RESTORE ``keys`` (names after the prefix kept) to their queues' slots, then delete them."""
        src = self.root.client
        with translate_errors(self.root.url):
            pipe = src.pipeline(transaction=False)
            for key in keys:
                pipe.dump(key)
                pipe.pttl(key)
            raw = pipe.execute()
        by_slot: dict[str, list[tuple[str, bytes, int]]] = defaultdict(list)
        for i, key in enumerate(keys):
            blob, ttl = raw[2 * i], int(raw[2 * i + 1])
            if blob is not None:
                by_slot[queue_of(key)].append((key[len(self.prefix):], blob, max(ttl, 0)))
        for queue, rows in by_slot.items():
            dest = self.slot(queue)
            self.done.queues.add(queue)
            with translate_errors(dest.url):
                pipe = dest.client.pipeline(transaction=False)
                for name, blob, ttl in rows:
                    pipe.restore(dest.prefix + name, ttl, blob, replace=True)
                pipe.execute()
        with translate_errors(self.root.url):
            src.delete(*keys)
        self.done.keys += len(keys)

    def _write(self, queue: str, fn: Callable[[Any, str], object]) -> None:
        """Run ``fn(pipeline, prefix)`` on one queue's slot."""
        dest = self.slot(queue)
        self.done.queues.add(queue)
        with translate_errors(dest.url):
            pipe = dest.client.pipeline(transaction=False)
            fn(pipe, dest.prefix)
            pipe.execute()

    # ---------------------------------------------------------------- steps

    def run(self) -> Moved:
        rewrite_links(self)  # workflows across queues: their links as the queue layout keeps them
        for batch in self._scan("j:"):
            with translate_errors(self.root.url):
                pipe = self.root.client.pipeline(transaction=False)
                for key in batch:
                    pipe.hget(key, "q")
                queues = pipe.execute()
            for key, q in zip(batch, queues):
                self.job_queue[key[len(self.prefix) + 2:]] = q.decode() if q else self.fallback
            self.done.jobs += len(batch)
            self._move(batch, lambda k: self.job_queue[k[len(self.prefix) + 2:]])
        for kind in BY_JOB[1:]:
            for batch in self._scan(kind + ":"):
                self._move(batch, functools.partial(self._owner_queue, skip=len(self.prefix) + len(kind) + 1))
        for kind in BY_QUEUE:
            for batch in self._scan(kind + ":"):
                self._move(batch, functools.partial(_named_queue, skip=len(self.prefix) + len(kind) + 1))
        for batch in self._scan("u:"):
            self._by_value(batch)
        for batch in self._scan("l:"):
            self._by_value(batch)
        for name in INDEXES:
            self._split_index(name)
        self._lock_waiters()
        self._workers()
        self._registries()
        self._stats()
        k = self.root.keys
        with translate_errors(self.root.url):
            self.root.client.delete(*[self.prefix + n for n in DROPPED[:2]])
            for batch in self._scan(""):
                self.done.left += [x for x in batch if x not in (k.layout, k.slot_queues)]
        return self.done

    def _owner_queue(self, key: str, skip: int) -> str:
        return self.queue_of_job(key[skip:])

    def _by_value(self, keys: list[str]) -> None:
        """Strings whose value is a job id (unique keys, resource locks)."""
        with translate_errors(self.root.url):
            values = self.root.client.mget(keys)
        owner = {k: self.queue_of_job(v.decode()) if v else self.fallback for k, v in zip(keys, values)}
        self._move(keys, owner.__getitem__)

    def _split_index(self, name: str) -> None:
        key = self.prefix + name
        with translate_errors(self.root.url):
            rows = list(self.root.client.zscan_iter(key, count=1000))
        groups: dict[str, dict[str, float]] = defaultdict(dict)
        for member, score in rows:
            jid = member.decode()
            groups[self.queue_of_job(jid)][jid] = score
        for queue, members in groups.items():
            self._write(queue, functools.partial(_zadd, name=name, members=members))
        with translate_errors(self.root.url):
            self.root.client.delete(key)

    def _lock_waiters(self) -> None:
        for batch in self._scan("lw:"):
            for key in batch:
                with translate_errors(self.root.url):
                    ids = [x.decode() for x in self.root.client.lrange(key, 0, -1)]
                groups: dict[str, list[str]] = defaultdict(list)
                for jid in ids:
                    groups[self.queue_of_job(jid)].append(jid)
                name = key[len(self.prefix):]
                for queue, ids in groups.items():
                    self._write(queue, functools.partial(_replace_list, name=name, ids=ids))
                with translate_errors(self.root.url):
                    self.root.client.delete(key)

    def _workers(self) -> None:
        """A worker's leases go to its jobs' slots, with its heartbeat: each
        slot's reaper returns them as it would have (the workers are stopped)."""
        k, c = self.root.keys, self.root.client
        with translate_errors(self.root.url):
            rows = c.zrange(k.workers, 0, -1, withscores=True)
        for raw_wid, hb in rows:
            wid = raw_wid.decode()
            with translate_errors(self.root.url):
                jobs = [j.decode() for j in c.smembers(k.worker_jobs(wid))]
                info = c.hgetall(k.worker(wid))
            groups: dict[str, list[str]] = defaultdict(list)
            for jid in jobs:
                groups[self.queue_of_job(jid)].append(jid)
            for queue, ids in groups.items():
                self._write(queue, functools.partial(_leases, wid=wid, hb=hb, ids=ids, info=info))
            with translate_errors(self.root.url):
                c.delete(k.worker_jobs(wid), k.worker(wid))
                c.zrem(k.workers, wid)

    def _registries(self) -> None:
        k, c = self.root.keys, self.root.client
        with translate_errors(self.root.url):
            queues = {q.decode() for q in c.smembers(k.queues)} | self.done.queues
            tasks = c.hgetall(k.tasks)
            cron = c.hgetall(k.cron)
        by_queue: dict[str, dict[bytes, bytes]] = defaultdict(dict)
        for name, tick in cron.items():
            by_queue[self.queue_of_task(name.decode())][name] = tick
        for queue in sorted(queues | set(by_queue)):
            self.root.register_slot(queue)

            def write(p: Any, pre: str, queue: str = queue) -> None:
                p.sadd(pre + "queues", queue)
                if tasks:
                    p.hset(pre + "tasks", mapping=tasks)
                if by_queue.get(queue):
                    p.hset(pre + "cron", mapping=by_queue[queue])
            self._write(queue, write)
        with translate_errors(self.root.url):
            c.delete(k.queues, k.tasks, k.cron)

    def _stats(self) -> None:
        k, c = self.root.keys, self.root.client
        with translate_errors(self.root.url):
            counters = c.hgetall(k.stats_counters)
        groups: dict[str, dict[bytes, int]] = defaultdict(dict)
        for f, n in counters.items():
            groups[f.decode().split(":", 1)[0]][f] = int(n)
        for queue, fields in groups.items():
            self._write(queue, functools.partial(_add, name="st:c", fields=fields))
        with translate_errors(self.root.url):
            c.delete(k.stats_counters)
        for batch in self._scan("st:h:"):
            for key in batch:
                with translate_errors(self.root.url):
                    fields = c.hgetall(key)
                name = key[len(self.prefix):]
                queue = self.queue_of_task(name[5:])
                self._write(queue, functools.partial(_add, name=name, fields={f: int(v) for f, v in fields.items()}))
                with translate_errors(self.root.url):
                    c.delete(key)
        for batch in self._scan("st:m:"):
            for key in batch:
                with translate_errors(self.root.url):
                    fields, ttl = c.hgetall(key), c.pttl(key)
                name = key[len(self.prefix):]
                minute: dict[str, dict[bytes, int]] = defaultdict(dict)
                for f, v in fields.items():
                    text = f.decode()
                    queue = text[2:].split("|", 1)[0] if text.startswith("q:") else self.fallback
                    minute[queue][f] = int(v)
                for queue, fs in minute.items():
                    self._write(queue, functools.partial(_add, name=name, fields=fs, ttl=ttl))
                with translate_errors(self.root.url):
                    c.delete(key)


def _zadd(p: Any, pre: str, *, name: str, members: dict[str, float]) -> None:
    p.zadd(pre + name, members)


def _replace_list(p: Any, pre: str, *, name: str, ids: list[str]) -> None:
    p.delete(pre + name)
    p.rpush(pre + name, *ids)


def _add(p: Any, pre: str, *, name: str, fields: dict[bytes, int], ttl: int = 0) -> None:
    for f, n in fields.items():
        p.hincrby(pre + name, f, n)
    if ttl > 0:
        p.pexpire(pre + name, ttl)


def _named_queue(key: str, skip: int) -> str:
    return key[skip:].split(":", 1)[0]


def _leases(p: Any, pre: str, *, wid: str, hb: float, ids: list[str], info: dict[bytes, bytes]) -> None:
    p.zadd(pre + "workers", {wid: hb})
    p.sadd(pre + "wj:" + wid, *ids)
    if info:
        p.hset(pre + "w:" + wid, mapping=info)
