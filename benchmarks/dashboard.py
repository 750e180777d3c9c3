"""Figure 7: server time of the dashboard's overview page with 100,000
queued jobs, 10,000 failed ones and 50 tasks (the ASGI app called in
process: routing, the library's reads, rendering; no network), next to a
raw floor: the same reads in one hand-written pipeline."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

from taskq.storage.keys import Keys

from .common import Context, wait_until
from .dashboard_tasks import TASKS, build
from .report import Row, Target

NAME = "dashboard"
TITLE = "7 dashboard"
REQUESTS = 20  # timed requests per run (the median is the run's figure)
QUEUES = ("mail", "billing", "reports")


async def _get(asgi: Any, path: str) -> tuple[int, int]:
    """One GET through the ASGI app: (status, body bytes)."""
    status, size = 0, 0
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.sleep(3600)
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status, size
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            size += len(message.get("body", b""))

    path, _, query = path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET", "scheme": "http",
             "path": path, "raw_path": path.encode(), "query_string": query.encode(), "root_path": "",
             "headers": [(b"host", b"bench")], "client": ("127.0.0.1", 1), "server": ("bench", 80)}
    await asgi(scope, receive, send)
    return status, size


def _timed(asgi: Any, path: str, n: int) -> list[float]:
    async def go() -> list[float]:
        out = []
        for _ in range(n):
            t0 = time.perf_counter()
            status, _ = await _get(asgi, path)
            out.append((time.perf_counter() - t0) * 1000)
            if status != 200:
                raise RuntimeError(f"GET {path} answered {status}")
        return out

    return asyncio.run(go())


def _raw_floor(ctx: Context, ns: str, n: int) -> list[float]:
    """The overview's reads by hand: counters, index sizes, workers, 60 minute
    buckets, 50 histograms, and per queue its levels' lengths and heads."""
    k, r = Keys(ns), ctx.redis
    now_min = int(time.time()) // 60
    levels = {q: [int(p) for p in r.zrange(k.priorities(q), 0, -1)] for q in QUEUES}
    out = []
    for _ in range(n):
        t0 = time.perf_counter()
        pipe = r.pipeline(transaction=False)
        pipe.hgetall(k.stats_counters)
        pipe.smembers(k.queues)
        for key in (k.schedule, k.stalled, k.failed):
            pipe.zcard(key)
        pipe.zrange(k.workers, 0, -1, withscores=True)
        for m in range(now_min - 59, now_min + 1):
            pipe.hgetall(k.stats_minute(m))
        for i in range(TASKS):
            pipe.hgetall(k.stats_histogram(f"dash.t{i:02d}"))
        for q, ps in levels.items():
            for p in ps:
                pipe.llen(k.ready(q, p))
                pipe.lindex(k.ready(q, p), -1)
        pipe.execute()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def _fill(ctx: Context, ns: str) -> Any:
    """100,000 queued jobs over 3 queues and 2 priorities, and 10,000 failed
    ones (plus as many succeeded) run by a real worker, over 50 tasks."""
    from taskq.web import create_app  # the optional extra, only for this figure

    queued, failed = ctx.sizes.dash_queued, ctx.sizes.dash_failed
    app = build(ctx.url, ns)
    names = [f"dash.t{i:02d}" for i in range(TASKS)]
    worker = ctx.worker_proc(ns)
    items = [(names[i % TASKS], (i % 2 == 0,), {}) for i in range(failed * 2)]
    app.enqueue_many(items, queue="work")
    wait_until(lambda: worker.check() or app.stats().failed >= failed, 600, "the failures", interval=0.2)
    worker.stop()
    for q_i, q in enumerate(QUEUES):
        share = queued // len(QUEUES) + (1 if q_i < queued % len(QUEUES) else 0)
        high = share // 10
        app.enqueue_many([(names[i % TASKS], (), {}) for i in range(high)], queue=q, priority="high")
        app.enqueue_many([(names[i % TASKS], (), {}) for i in range(share - high)], queue=q)
    stats = app.stats()
    if stats.ready != queued or stats.failed != failed or len(stats.tasks) != TASKS:
        raise RuntimeError(f"set-up: {stats.ready} queued, {stats.failed} failed, {len(stats.tasks)} tasks")
    return app, create_app(app, refresh=0)


def run(ctx: Context) -> list[Row]:
    overview, failed_page, raw = [], [], []
    for _ in range(ctx.runs):
        ns = ctx.namespace()
        app, asgi = _fill(ctx, ns)
        _timed(asgi, "/", 3)  # connect, load templates
        overview.append(statistics.median(_timed(asgi, "/", REQUESTS)))
        failed_page.append(statistics.median(_timed(asgi, "/jobs?state=failed", REQUESTS)))
        raw.append(statistics.median(_raw_floor(ctx, ns, REQUESTS)))
        app.close()
        ctx.flush()
    q, f = ctx.sizes.dash_queued, ctx.sizes.dash_failed
    return [
        Row(TITLE, f"overview, {q:,} queued, {f:,} failed, {TASKS} tasks", "ms", overview, raw,
            Target("<=", 300, "ms")),
        Row(TITLE, "failed jobs page (first 50 with errors)", "ms", failed_page, raw, show_ratio=False),
    ]
