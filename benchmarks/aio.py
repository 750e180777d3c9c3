"""Figure 7: the asyncio producer API, next to figures 1 and 4.

Single enqueue: ``await task.adelay()`` one after another, and from 32
tasks of one loop at once, against ``await r.lpush()`` on a
``redis.asyncio`` client done the same way, in alternating blocks. Round
trip: ``await (await add.adelay(1, 2)).aresult()`` served by one worker
against the raw echo of figure 4 driven from ``redis.asyncio``, job by job.
"""

from __future__ import annotations

import asyncio
import statistics
import time
from collections.abc import Awaitable, Callable

import redis.asyncio as aioredis

from .common import Context, wait_until
from .enqueue import BLOCKS, PAYLOAD, payload_blob
from .report import Row, Target, percentile
from .tasks import build

NAME = "aio"
TITLE = "8 asyncio"
CONCURRENT = 32
WARMUP = 20


async def _timed_blocks(n: int, ours: Callable[[], Awaitable[object]], raw: Callable[[], Awaitable[object]],
                        concurrent: int) -> tuple[float, float]:
    """Rates (per s) of ``n`` calls of each, in alternating blocks, ``concurrent`` at a time."""
    block = max(concurrent, n // BLOCKS)
    ours_s = raw_s = 0.0

    async def run(fn: Callable[[], Awaitable[object]]) -> float:
        t0 = time.perf_counter()
        if concurrent == 1:
            for _ in range(block):
                await fn()
        else:
            for _ in range(block // concurrent):
                await asyncio.gather(*[fn() for _ in range(concurrent)])
        return time.perf_counter() - t0

    for _ in range(BLOCKS):
        ours_s += await run(ours)
        raw_s += await run(raw)
    done = (block // concurrent) * concurrent * BLOCKS
    return done / ours_s, done / raw_s


async def _enqueue(ctx: Context, concurrent: int) -> tuple[list[float], list[float]]:
    ours, raw = [], []
    blob = payload_blob()
    for _ in range(ctx.runs):
        ns = ctx.namespace()
        app = build(ctx.url, ns)
        task = app.tasks["noop"]
        r = aioredis.Redis.from_url(ctx.url, protocol=2, health_check_interval=0,
                                    max_connections=CONCURRENT)
        key = f"raw:{ns}:q"
        await task.adelay(PAYLOAD)  # connect and load the script outside the timing
        await r.lpush(key, blob)
        a, b = await _timed_blocks(ctx.sizes.single, lambda task=task: task.adelay(PAYLOAD),
                                   lambda r=r, key=key: r.lpush(key, blob), concurrent)
        ours.append(a)
        raw.append(b)
        await app.aclose()
        await r.aclose()
        app.close()
        ctx.flush()
    return ours, raw


async def _roundtrip(ctx: Context) -> tuple[list[float], ...]:
    n = ctx.sizes.roundtrip
    ns = ctx.namespace()
    app = build(ctx.url, ns)
    add = app.tasks["add"]
    worker = ctx.worker(ns, 1)
    ctx.wait_registered(worker, ns, 1)
    requests, ready = f"raw:{ns}:req", f"raw:{ns}:ready"
    ctx.raw("echo", requests, ready)
    wait_until(lambda: ctx.redis.get(ready), 60, "raw echo process", interval=0.01)
    r = aioredis.Redis.from_url(ctx.url, protocol=2, health_check_interval=0)

    async def ours_once() -> float:
        t0 = time.perf_counter()
        if await (await add.adelay(1, 2)).aresult(timeout=30) != 3:
            raise RuntimeError("add(1, 2) did not return 3")
        return (time.perf_counter() - t0) * 1000

    async def raw_once(i: int) -> float:
        reply = f"raw:{ns}:rep:{i}"
        t0 = time.perf_counter()
        await r.lpush(requests, reply)
        if await r.blpop([reply], 30) is None:
            raise RuntimeError("no raw reply within 30s")
        return (time.perf_counter() - t0) * 1000

    for i in range(WARMUP):
        await ours_once()
        await raw_once(i)
    p50, p99, raw50, raw99 = [], [], [], []
    try:
        for _ in range(ctx.runs):
            ours, raw = [], []
            for i in range(n):
                ours.append(await ours_once())
                raw.append(await raw_once(i))
            p50.append(statistics.median(ours))
            p99.append(percentile(ours, 99))
            raw50.append(statistics.median(raw))
            raw99.append(percentile(raw, 99))
    finally:
        await r.lpush(requests, "stop")
        await r.aclose()
        await app.aclose()
        app.close()
        ctx.reap()
        ctx.flush()
    return p50, p99, raw50, raw99


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.single
    one, one_raw = asyncio.run(_enqueue(ctx, 1))
    many, many_raw = asyncio.run(_enqueue(ctx, CONCURRENT))
    p50, p99, raw50, raw99 = asyncio.run(_roundtrip(ctx))
    rt = ctx.sizes.roundtrip
    return [
        Row(TITLE, f"adelay() x{n:,}, one at a time", "jobs/s", one, one_raw, Target("ratio>=", 0.7)),
        Row(TITLE, f"adelay() x{n:,}, {CONCURRENT} tasks at once", "jobs/s", many, many_raw,
            Target("ratio>=", 0.5)),
        Row(TITLE, f"round trip p50 over {rt:,} sequential", "ms", p50, raw50, Target("ratio<=", 1.5)),
        Row(TITLE, f"round trip p99 over {rt:,} sequential", "ms", p99, raw99, Target("<=", 3, "ms")),
    ]
