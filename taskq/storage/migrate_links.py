"""The migration's step for workflows whose jobs use several queues: run
in ``{ns}`` before the jobs move, it rewrites their links as the queue
key layout keeps them across slots (see ``lua/_lib.lua``): a parent of
another queue is named with its queue in its dependency's ``pa`` (its end
then goes through the outbox), and a handle's members' list is split by
the members' queues, the handle naming the other queues in ``wq``.
Each rewrite is idempotent: a run stopped midway is finished by the next.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import msgpack

from .backend import Backend
from .connection import translate_errors


class Migration(Protocol):
    """What this step uses of a migration (``migrate.Migration``)."""

    root: Backend
    prefix: str
    fallback: str

    def queue_of_job(self, job_id: str) -> str: ...

    def _scan(self, start: str) -> Iterator[list[str]]: ...

    def _write(self, queue: str, fn: Callable[[Any, str], object]) -> None: ...


def rewrite_links(m: Migration) -> None:
    """Both rewrites, in ``{ns}``: parents first, then members' lists."""
    root, c = m.root, m.root.client
    for batch in m._scan("j:"):
        with translate_errors(root.url):
            pipe = c.pipeline(transaction=False)
            for key in batch:
                pipe.hmget(key, "q", "pa")
            rows = pipe.execute()
            pipe = c.pipeline(transaction=False)
            for key, (raw_q, raw_pa) in zip(batch, rows):
                if raw_pa:
                    links = _rewritten(m, raw_q.decode() if raw_q else m.fallback, raw_pa)
                    if links is not None:
                        pipe.hset(key, "pa", links)
            pipe.execute()
    for batch in m._scan("wm:"):
        for key in batch:
            _split_members(m, key)


def _rewritten(m: Migration, queue: str, raw: bytes) -> bytes | None:
    """``pa`` with each parent of another queue as [index, queue]; None if unchanged."""
    try:
        flat: list[Any] = msgpack.unpackb(raw, raw=False)
    except (ValueError, msgpack.ExtraData, TypeError):
        return None
    changed = False
    for i in range(0, len(flat) - 1, 2):
        if isinstance(flat[i + 1], int):
            parent_queue = m.queue_of_job(str(flat[i]))
            if parent_queue != queue:
                flat[i + 1] = [flat[i + 1], parent_queue]
                changed = True
    return msgpack.packb(flat) if changed else None


def _split_members(m: Migration, key: str) -> None:
    root, c = m.root, m.root.client
    hid = key[len(m.prefix) + 3:]
    home = m.queue_of_job(hid)
    with translate_errors(root.url):
        ids = [x.decode() for x in c.lrange(key, 0, -1)]
        had = (c.hget(root.keys.job(hid), "wq") or b"").decode().split()
    groups: dict[str, list[str]] = defaultdict(list)
    for jid in ids:
        groups[m.queue_of_job(jid)].append(jid)
    others = sorted(set(groups) - {home})
    if not others:
        return
    for queue in others:
        def write(p: Any, pre: str, ids: list[str] = groups[queue]) -> None:
            p.delete(pre + "wm:" + hid)  # written whole: a run again after a stop writes it once
            p.rpush(pre + "wm:" + hid, *ids)
        m._write(queue, write)
    with translate_errors(root.url):
        pipe = c.pipeline(transaction=True)
        pipe.hset(root.keys.job(hid), "wq", " ".join(sorted(set(had) | set(others))))
        pipe.delete(key)
        if groups.get(home):
            pipe.rpush(key, *groups[home])
        pipe.execute()
