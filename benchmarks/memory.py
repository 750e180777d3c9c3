"""Figure 6: memory.

Server: ``INFO memory`` used_memory before and after queueing jobs with a
100-byte argument payload, on an emptied server. raw: a minimal job record
for the same payload (a hash ``j:<id>`` holding it, the id in a list).

Finished: the same after a worker ran those jobs (succeeded, readable
through ``app.job(id)`` for ``succeeded_ttl``; the finished index capped
at ``done_max``). raw: the same hash with the two fields a finished job
needs (state, finish time) and an expiry.

Worker: VmRSS of an idle ``taskq worker -c 1`` (supervisor and child) vs an
idle raw consumer process (Python + redis-py blocked in ``BLMOVE``).
"""

from __future__ import annotations

import time

from .common import Context, child_pids, client, rss_kb, wait_until
from .enqueue import PAYLOAD, payload_blob
from .report import Row, Target
from .tasks import build

NAME = "memory"
TITLE = "6 memory"
BATCH = 1000


def used_memory(ctx: Context) -> int:
    return int(ctx.redis.info("memory")["used_memory"])


def taskq_bytes(ctx: Context, n: int) -> int:
    """Memory the jobs take; the producer is disconnected at both readings."""
    ns = ctx.namespace()
    warm = build(ctx.url, ns)
    warm.tasks["noop"].delay(PAYLOAD)  # load the script outside the measurement
    warm.close()
    ctx.flush()
    before = used_memory(ctx)
    app = build(ctx.url, ns)
    app.tasks["noop"].map([(PAYLOAD,)] * n)
    app.close()
    return used_memory(ctx) - before


def finished_bytes(ctx: Context, n: int) -> int:
    """Memory ``n`` succeeded jobs take, once a worker ran them all."""
    ns = ctx.namespace()
    warm = build(ctx.url, ns)
    warm.tasks["noop"].delay(PAYLOAD)
    warm.close()
    ctx.flush()
    before = used_memory(ctx)
    app = build(ctx.url, ns)
    app.tasks["noop"].map([(PAYLOAD,)] * n)
    worker = ctx.worker(ns, 2)
    counters = "{" + ns + "}:st:c"

    def done() -> bool:
        worker.check()
        return int(ctx.redis.hget(counters, "default:noop|succeeded") or 0) >= n

    wait_until(done, 600, "the jobs to finish", interval=0.1)
    worker.stop()
    app.close()
    # what the worker left besides the jobs (its registration, counters) is not theirs
    ctx.redis.delete("{" + ns + "}:workers", "{" + ns + "}:reaper")
    return used_memory(ctx) - before


def raw_finished_bytes(ctx: Context, n: int) -> int:
    ctx.flush()
    ns, blob = ctx.namespace(), payload_blob()
    before = used_memory(ctx)
    r = client(ctx.url)
    now = int(time.time() * 1000)
    for start in range(0, n, BATCH):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n, start + BATCH)):
            key = f"raw:{ns}:j:{i:016d}"
            pipe.hset(key, mapping={"d": blob, "s": "succeeded", "f": now})
            pipe.pexpire(key, 3_600_000)
        pipe.execute()
    r.close()
    return used_memory(ctx) - before


def raw_bytes(ctx: Context, n: int) -> int:
    ctx.flush()
    ns, blob = ctx.namespace(), payload_blob()
    before = used_memory(ctx)
    r = client(ctx.url)
    for start in range(0, n, BATCH):
        pipe = r.pipeline(transaction=False)
        for i in range(start, min(n, start + BATCH)):
            jid = f"{i:016d}"
            pipe.hset(f"raw:{ns}:j:{jid}", "d", blob)
            pipe.lpush(f"raw:{ns}:q", jid)
        pipe.execute()
    r.close()
    return used_memory(ctx) - before


def worker_rss(ctx: Context) -> tuple[float, float]:
    """(supervisor, child) VmRSS in MB of an idle ``taskq worker -c 1``."""
    ns = ctx.namespace()
    worker = ctx.worker(ns, 1)
    ctx.wait_registered(worker, ns, 1)
    time.sleep(ctx.sizes.idle)
    children = child_pids(worker.pid)
    if not children:
        raise RuntimeError("the worker has no child process")
    sizes = rss_kb(worker.pid) / 1024, rss_kb(children[0]) / 1024
    worker.stop(wait=False)
    return sizes


def raw_rss(ctx: Context) -> float:
    ns = ctx.namespace()
    ready = f"raw:{ns}:ready"
    consumer = ctx.raw("consume", f"raw:{ns}:empty", f"raw:{ns}:processing", ready, "incr", ns, stdout=False)
    wait_until(lambda: ctx.redis.get(ready), 60, "raw consumer", interval=0.01)
    time.sleep(ctx.sizes.idle)
    size = rss_kb(consumer.pid) / 1024
    consumer.stop(wait=False)
    return size


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.memory
    payload = len(payload_blob())
    ours, raw, sup, child, raw_proc = [], [], [], [], []
    fin, raw_fin = [], []
    for _ in range(ctx.runs):
        ours.append(taskq_bytes(ctx, n))
        raw.append(raw_bytes(ctx, n))
    for _ in range(ctx.runs):
        fin.append(finished_bytes(ctx, n))
        raw_fin.append(raw_finished_bytes(ctx, n))
    ctx.reap()
    ctx.flush()
    for _ in range(ctx.runs):
        s, c = worker_rss(ctx)
        sup.append(s)
        child.append(c)
        raw_proc.append(raw_rss(ctx))
    ctx.reap()
    ctx.flush()
    mb = 1024 * 1024
    return [
        Row(TITLE, f"server bytes/job beyond the {payload} B payload", "B",
            [b / n - payload for b in ours], [b / n - payload for b in raw], Target("<=", 250, "B")),
        Row(TITLE, f"server memory for {n:,} queued jobs", "MB", [b / mb for b in ours], [b / mb for b in raw]),
        Row(TITLE, f"server bytes/finished job beyond the {payload} B payload", "B",
            [b / n - payload for b in fin], [b / n - payload for b in raw_fin], Target("<=", 400, "B")),
        Row(TITLE, f"server memory for {n:,} finished jobs", "MB", [b / mb for b in fin],
            [b / mb for b in raw_fin]),
        Row(TITLE, "idle worker RSS: child", "MB", child, raw_proc, Target("<=", 40, "MB")),
        Row(TITLE, "idle worker RSS: supervisor", "MB", sup, raw_proc, Target("<=", 40, "MB")),
    ]
