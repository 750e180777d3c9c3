"""Figure 4: enqueue -> result round trip over sequential jobs.

taskq: ``add.delay(1, 2).result()`` on a ``tombstone=True`` task served by
one worker process. raw: the client ``LPUSH``es a request naming a reply key
and ``BLPOP``s that key; a raw process ``BLPOP``s requests and ``LPUSH``es
the reply. The two alternate job by job, so both meet the same machine state.
"""

from __future__ import annotations

import statistics
import time

from .common import Context, wait_until
from .report import Row, Target, percentile
from .tasks import build

NAME = "roundtrip"
TITLE = "4 round trip"
WARMUP = 20


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.roundtrip
    ns = ctx.namespace()
    app = build(ctx.url, ns)
    add = app.tasks["add"]
    worker = ctx.worker(ns, 1)
    ctx.wait_registered(worker, ns, 1)
    r = ctx.redis
    requests, ready = f"raw:{ns}:req", f"raw:{ns}:ready"
    ctx.raw("echo", requests, ready)  # stopped by ctx.reap()
    wait_until(lambda: r.get(ready), 60, "raw echo process", interval=0.01)

    def ours_once() -> float:
        t0 = time.perf_counter()
        if add.delay(1, 2).result(timeout=30) != 3:
            raise RuntimeError("add(1, 2) did not return 3")
        return (time.perf_counter() - t0) * 1000

    def raw_once(i: int) -> float:
        reply = f"raw:{ns}:rep:{i}"
        t0 = time.perf_counter()
        r.lpush(requests, reply)
        if r.blpop([reply], 30) is None:
            raise RuntimeError("no raw reply within 30s")
        return (time.perf_counter() - t0) * 1000

    for i in range(WARMUP):
        ours_once()
        raw_once(i)
    p50, p99, raw50, raw99 = [], [], [], []
    try:
        for _ in range(ctx.runs):
            ours, raw = [], []
            for i in range(n):  # interleaved: both see the same machine
                ours.append(ours_once())
                raw.append(raw_once(i))
            p50.append(statistics.median(ours))
            p99.append(percentile(ours, 99))
            raw50.append(statistics.median(raw))
            raw99.append(percentile(raw, 99))
    finally:
        r.lpush(requests, "stop")
        app.close()
        ctx.reap()
        ctx.flush()
    return [
        Row(TITLE, f"p50 over {n:,} sequential", "ms", p50, raw50, Target("ratio<=", 1.5)),
        Row(TITLE, f"p99 over {n:,} sequential", "ms", p99, raw99, Target("<=", 3, "ms")),
    ]
