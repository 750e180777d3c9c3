"""Reads: job hashes, queues, indexes and the stats keys (no writes)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Sequence
from typing import Any

from .connection import Connection, translate_errors
from .keys import glob_escape
from .records import Field, JobRecord


def fold_counters(raw: dict[bytes, bytes]) -> tuple[dict[str, int], dict[str, int]]:
    """``st:c`` fields (``<queue>:<task>|<counter>``) summed per task and per
    queue: ``({"<task>|<counter>": n}, {"<queue>|<counter>": n})``."""
    tasks: dict[str, int] = {}
    queues: dict[str, int] = {}
    for f, v in raw.items():
        queue, _, rest = f.decode().partition(":")
        task, _, counter = rest.rpartition("|")
        n = int(v)
        tasks[f"{task}|{counter}"] = tasks.get(f"{task}|{counter}", 0) + n
        queues[f"{queue}|{counter}"] = queues.get(f"{queue}|{counter}", 0) + n
    return tasks, queues


def fold_minute(raw: dict[bytes, bytes]) -> dict[str, int]:
    """A minute bucket (``q:<queue>|<counter>`` fields) with the namespace
    totals (``<counter>``) added."""
    out: dict[str, int] = {}
    for f, v in raw.items():
        field, n = f.decode(), int(v)
        out[field] = n
        counter = field.rpartition("|")[2]
        out[counter] = out.get(counter, 0) + n
    return out


class Reads(Connection):
    """What inspection, listings and stats read."""


    def job_hash(self, job_id: str) -> dict[str, bytes]:
        with translate_errors(self.url):
            raw = self.client.hgetall(self.keys.job(job_id))
        return {k.decode(): v for k, v in raw.items()}

    def job_record(self, job_id: str) -> JobRecord | None:
        """The job as stored; None if there is no such job."""
        return JobRecord.from_hash(job_id, self.job_hash(job_id))

    def job_records(self, job_ids: Sequence[str]) -> list[JobRecord | None]:
        return [JobRecord.from_hash(jid, h) for jid, h in zip(job_ids, self.job_hashes(job_ids))]

    def job_state(self, job_id: str) -> str | None:
        """A job's state (None if there is no such job): one field, not the hash."""
        with translate_errors(self.url):
            raw = self.client.hget(self.keys.job(job_id), Field.STATE)
        return raw.decode() if raw is not None else None

    def job_task(self, job_id: str) -> str | None:
        """The task name of a job (None if there is no such job)."""
        with translate_errors(self.url):
            raw = self.client.hget(self.keys.job(job_id), Field.TASK)
        return raw.decode("utf-8", "replace") if raw is not None else None

    def job_hashes(self, job_ids: Sequence[str]) -> list[dict[str, bytes]]:
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for jid in job_ids:
                pipe.hgetall(self.keys.job(jid))
            return [{k.decode(): v for k, v in raw.items()} for raw in pipe.execute()]

    def queue_names(self) -> list[str]:
        with translate_errors(self.url):
            return sorted(q.decode() for q in self.client.smembers(self.keys.queues))

    def queue_levels(self, queue: str) -> dict[int, int]:
        """Ready depth of a queue per priority level."""
        with translate_errors(self.url):
            levels = [int(p) for p in self.client.zrange(self.keys.priorities(queue), 0, -1)]
            pipe = self.client.pipeline(transaction=False)
            for p in levels:
                pipe.llen(self.keys.ready(queue, p))
            return dict(zip(levels, pipe.execute()))

    def ready_ids(self, queue: str, limit: int) -> list[str]:
        """Ready job ids of a queue in the order they will be taken."""
        out: list[str] = []
        with translate_errors(self.url):
            for p in self.client.zrange(self.keys.priorities(queue), 0, -1):
                key = self.keys.ready(queue, int(p))
                out += [x.decode() for x in reversed(self.client.lrange(key, -(limit - len(out)), -1))]
                if len(out) >= limit:
                    break
        return out[:limit]

    def ready_id_pages(self, queue: str, batch: int) -> Iterator[list[str]]:
        """Every ready job id of a queue, in the order they will be taken, in
        pages of up to ``batch`` (each priority level read on until it ends)."""
        with translate_errors(self.url):
            levels = self.client.zrange(self.keys.priorities(queue), 0, -1)
        for p in levels:
            key = self.keys.ready(queue, int(p))
            offset = 0
            while True:
                with translate_errors(self.url):
                    raw = self.client.lrange(key, -(offset + batch), -(offset + 1))
                if raw:
                    yield [x.decode() for x in reversed(raw)]
                if len(raw) < batch:
                    break
                offset += len(raw)

    def oldest_ready_created_ms(self, queue: str) -> int | None:
        ids = self.ready_ids(queue, 1)
        if not ids:
            return None
        with translate_errors(self.url):
            raw = self.client.hget(self.keys.job(ids[0]), "c")
        return int(raw) if raw else None

    def job_states(self, batch: int = 1000) -> Iterator[tuple[str, str]]:
        """``(id, state)`` of every job of the namespace, in no order (a SCAN)."""
        cut = len(self.keys.job("").encode())
        with translate_errors(self.url):
            keys: list[bytes] = []
            for key in itertools.chain(self.client.scan_iter(match=self.keys.scan_pattern("j:"), count=batch), [None]):
                if key is not None:
                    keys.append(key)
                    if len(keys) < batch:
                        continue
                pipe = self.client.pipeline(transaction=False)
                for k in keys:
                    pipe.hget(k, "s")
                for k, state in zip(keys, pipe.execute()):
                    if state:
                        yield k[cut:].decode(), state.decode()
                keys = []

    def zset_ids(self, key: str, limit: int, newest_first: bool = True, offset: int = 0) -> list[str]:
        with translate_errors(self.url):
            if newest_first:
                raw = self.client.zrevrange(key, offset, offset + limit - 1)
            else:
                raw = self.client.zrange(key, offset, offset + limit - 1)
        return [x.decode() for x in raw]

    def zcard(self, key: str) -> int:
        with translate_errors(self.url):
            return int(self.client.zcard(key))

    def hgetall(self, key: str) -> dict[str, bytes]:
        with translate_errors(self.url):
            return {k.decode(): v for k, v in self.client.hgetall(key).items()}

    def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            return [{k.decode(): v for k, v in raw.items()} for raw in pipe.execute()]

    def count_keys(self) -> int:
        n = 0
        with translate_errors(self.url):
            for _ in self.client.scan_iter(match=self.keys.pattern, count=1000):
                n += 1
        return n

    def delete_namespace(self) -> int:
        """Delete every key of the namespace (tests and ``taskq purge --all``)."""
        self._tails = {}  # what they left out is undone now
        n = 0
        with translate_errors(self.url):
            batch = []
            for key in self.client.scan_iter(match=self.keys.pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    n += self.client.delete(*batch)
                    batch = []
            if batch:
                n += self.client.delete(*batch)
        return n

    def subscribe_events(self, every_slot: bool = False) -> Any:
        """A subscription to the namespace's job events; ``every_slot``: to
        those of each queue's slot (``queue`` key layout), by pattern."""
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        try:
            with translate_errors(self.url):
                if every_slot:
                    ns = self.keys.namespace
                    pubsub.psubscribe(glob_escape("{" + ns + ":") + "*" + glob_escape("}:events"))
                else:
                    pubsub.subscribe(self.keys.events)
        except BaseException:
            pubsub.close()  # its connection, if any, is not left open
            raise
        return pubsub

    # ---- reads for stats

    def stats_snapshot(self, minutes: Sequence[int]) -> dict[str, Any]:
        """Counters, index sizes, workers and the given minute buckets, in one round trip."""
        k = self.keys
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(k.stats_counters)
            pipe.smembers(k.queues)
            pipe.zcard(k.schedule)
            pipe.zcard(k.stalled)
            pipe.zcard(k.failed)
            pipe.zrange(k.workers, 0, -1, withscores=True)
            for minute in minutes:
                pipe.hgetall(k.stats_minute(minute))
            raw = pipe.execute()
        tasks, queues = fold_counters(raw[0])
        return {
            "tasks": tasks, "queues": queues, "queue_names": sorted(q.decode() for q in raw[1]),
            "scheduled": int(raw[2]), "stalled": int(raw[3]), "failed": int(raw[4]),
            "workers": [(w.decode(), int(s)) for w, s in raw[5]], "minutes": [fold_minute(h) for h in raw[6:]],
        }

    def task_counters(self) -> dict[str, int]:
        """All-time counters per task: ``{"<task>|<counter>": n}``."""
        with translate_errors(self.url):
            return fold_counters(self.client.hgetall(self.keys.stats_counters))[0]

    def histograms(self, tasks: Sequence[str]) -> list[dict[str, int]]:
        """The run-time histogram of each task: ``le_<ms>``/``le_inf`` counts and ``sum_ms``."""
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for task in tasks:
                pipe.hgetall(self.keys.stats_histogram(task))
            return [{f.decode(): int(v) for f, v in h.items()} for h in pipe.execute()]

    def queue_figures(self, queues: Sequence[str]) -> dict[str, tuple[dict[int, int], int | None]]:
        """Per queue: ready depth per priority level, and the created_ms of the
        oldest job at the head of any level (None when empty). Three round trips."""
        k = self.keys
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                pipe.zrange(k.priorities(q), 0, -1)
            levels = [[int(p) for p in ps] for ps in pipe.execute()]
            pipe = self.client.pipeline(transaction=False)
            for q, ps in zip(queues, levels):
                for p in ps:
                    pipe.llen(k.ready(q, p))
                    pipe.lindex(k.ready(q, p), -1)  # consumers RPOP: the tail is taken next
            raw = iter(pipe.execute())
            heads: list[tuple[dict[int, int], list[bytes]]] = []
            for ps in levels:
                depth: dict[int, int] = {}
                ids: list[bytes] = []
                for p in ps:
                    n, head = int(next(raw)), next(raw)
                    if n:
                        depth[p] = n
                    if head is not None:
                        ids.append(head)
                heads.append((depth, ids))
            pipe = self.client.pipeline(transaction=False)
            for _, ids in heads:
                for jid in ids:
                    pipe.hget(k.job(jid.decode()), "c")
            created = iter(pipe.execute())
        out: dict[str, tuple[dict[int, int], int | None]] = {}
        for q, (depth, ids) in zip(queues, heads):
            times = [int(c) for c in (next(created) for _ in ids) if c]
            out[q] = (depth, min(times) if times else None)
        return out

    def worker_job_counts(self, worker_ids: Sequence[str]) -> list[int]:
        """How many jobs each worker holds (SCARD of its ``wj`` set)."""
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for wid in worker_ids:
                pipe.scard(self.keys.worker_jobs(wid))
            return [int(n) for n in pipe.execute()]
