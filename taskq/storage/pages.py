"""Reads for paging through jobs and periodic ticks: a slice of ready lists
by position, one step of a resumable scan of job states, and the last tick
of every periodic task. Each read is a bounded number of round trips,
whatever the number of jobs."""

from __future__ import annotations

from collections.abc import Sequence

from .backend import Backend, translate_errors


def ready_slice(b: Backend, queues: Sequence[str], offset: int, count: int) -> tuple[list[str], int]:
    """Ids of the ready jobs at positions ``[offset, offset + count)`` of the
    given queues (queue after queue, each in the order its jobs will be
    taken, as ``Backend.ready_ids``), and how many ready jobs the queues hold.
    Three round trips."""
    k = b.keys
    with translate_errors(b.url):
        pipe = b.client.pipeline(transaction=False)
        for q in queues:
            pipe.zrange(k.priorities(q), 0, -1)
        lists = [k.ready(q, int(p)) for q, levels in zip(queues, pipe.execute()) for p in levels]
        pipe = b.client.pipeline(transaction=False)
        for key in lists:
            pipe.llen(key)
        lengths = [int(n) for n in pipe.execute()]
        pipe = b.client.pipeline(transaction=False)
        pos = planned = 0
        for key, n in zip(lists, lengths):
            if planned >= count:
                break
            if offset < pos + n:
                start = max(offset - pos, 0)  # counted from the tail: consumers take from there
                take = min(n - start, count - planned)
                pipe.lrange(key, -(start + take), -(start + 1))
                planned += take
            pos += n
        out = [x.decode() for raw in pipe.execute() for x in reversed(raw)]
    return out, sum(lengths)


def scan_job_states(b: Backend, cursor: int, count: int = 1000) -> tuple[int, list[tuple[str, str]]]:
    """One SCAN step over the namespace's job hashes from ``cursor``: the next
    cursor (0 once the scan is complete) and ``(id, state)`` of the jobs met.
    Two round trips."""
    cut = len(b.keys.job(""))
    with translate_errors(b.url):
        nxt, keys = b.client.scan(cursor=cursor, match=b.keys.scan_pattern("j:"), count=count)
        pipe = b.client.pipeline(transaction=False)
        for key in keys:
            pipe.hget(key, "s")
        states = pipe.execute()
    return int(nxt), [(_text(key)[cut:], _text(st)) for key, st in zip(keys, states) if st]


def cron_ticks(b: Backend) -> dict[str, int]:
    """The last tick (epoch ms) each periodic task fired for, by name."""
    with translate_errors(b.url):
        raw = b.client.hgetall(b.keys.cron)
    return {_text(k): int(v) for k, v in raw.items()}


def _text(raw: bytes | str) -> str:
    return raw.decode() if isinstance(raw, bytes) else raw
