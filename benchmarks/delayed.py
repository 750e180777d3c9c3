"""Figure 5: delayed jobs.

Lateness: jobs with due times spread over a window are enqueued (``eta``)
for one running worker; each records ``time.time()`` at its start minus its
due time. raw: one process polls a sorted set (member -> due ms), sleeping
until the first due time, and takes due members with ``ZREM``.

Backlog: jobs enqueued with a delay are promoted by ``Scheduler.tick`` with
``now_ms`` far in the future, until ``{ns}:sched`` is empty. raw:
``ZRANGEBYSCORE ... LIMIT 5000`` then ``MULTI ZREM + LPUSH`` per batch.
"""

from __future__ import annotations

import datetime as dt
import statistics
import sys
import time
from pathlib import Path

from taskq import TaskQ
from taskq.enqueue import build_job
from taskq.worker.scheduler import PROMOTE_BATCH, Scheduler

from .common import Context, wait_until
from .report import Row, Target, percentile
from .tasks import build

NAME = "delayed"
TITLE = "5 delayed"
CHUNK = 1000
BACKLOG_TARGET_S_PER_100K = 2.0


def due_times(n: int, window: float) -> list[dt.datetime]:
    """Due times spread over ``window`` s, starting once enqueueing surely ended."""
    start = time.time() + 0.25 + n / 10_000
    return [dt.datetime.fromtimestamp(start + window * i / n, dt.UTC) for i in range(n)]


def taskq_lateness(ctx: Context, app: TaskQ, path: Path) -> list[float]:
    n, window = ctx.sizes.late, ctx.sizes.late_window
    options = app.options_for("late")
    etas = due_times(n, window)
    first_due = etas[0].timestamp()
    for start in range(0, n, CHUNK):
        chunk = []
        for eta in etas[start:start + CHUNK]:
            due_ms = int(eta.timestamp() * 1000)  # the due time the job gets (see enqueue._eta_ms)
            chunk.append(build_job(app.settings, "late", (due_ms, str(path)), {}, options, {}, eta=eta))
        app.backend.enqueue(chunk)
    if time.time() > first_due:
        print(f"warning: enqueueing ended {time.time() - first_due:.3f}s after the first due time",
              file=sys.stderr)
    key, field = app.backend.keys.stats_counters, "default:late|succeeded"
    before = int(ctx.redis.hget(key, field) or 0)
    wait_until(lambda: int(ctx.redis.hget(key, field) or 0) - before >= n, window + 60,
               "delayed jobs", interval=0.05)
    return [float(x) for x in path.read_text().split()]


def raw_lateness(ctx: Context, ns: str, run: int) -> list[float]:
    n, window = ctx.sizes.late, ctx.sizes.late_window
    sched, ready = f"raw:{ns}:sched:{run}", f"raw:{ns}:ready:{run}"
    poller = ctx.raw("delayed", sched, ready, n)
    wait_until(lambda: ctx.redis.get(ready), 60, "raw poller", interval=0.01)
    pipe = ctx.redis.pipeline(transaction=False)
    for i, eta in enumerate(due_times(n, window)):
        pipe.zadd(sched, {f"{i:016d}": int(eta.timestamp() * 1000)})
    pipe.execute()
    late: list[float] = ctx.raw_results([poller], window + 60)[0]["late"]
    ctx.procs.remove(poller)
    return late


def taskq_backlog(ctx: Context, n: int) -> float:
    app = build(ctx.url, ctx.namespace())
    app.tasks["noop"].map([()] * n, delay=3600)
    r, sched = ctx.redis, app.backend.keys.schedule
    scheduler = Scheduler(app, reaper=False)
    far = int(time.time() * 1000) + 7200_000
    t0 = time.perf_counter()
    while r.zcard(sched):
        scheduler.tick(now_ms=far)
    elapsed = time.perf_counter() - t0
    app.close()
    return elapsed


def raw_backlog(ctx: Context, n: int) -> float:
    r, ns = ctx.redis, ctx.namespace()
    sched, queue = f"raw:{ns}:sched", f"raw:{ns}:q"
    for start in range(0, n, CHUNK):
        r.zadd(sched, {f"{i:016d}": i for i in range(start, min(n, start + CHUNK))})
    now = int(time.time() * 1000)
    t0 = time.perf_counter()
    while True:
        ids = r.zrangebyscore(sched, "-inf", now, start=0, num=PROMOTE_BATCH)
        if not ids:
            break
        pipe = r.pipeline(transaction=True)
        pipe.zrem(sched, *ids)
        pipe.lpush(queue, *ids)
        pipe.execute()
    return time.perf_counter() - t0


def run(ctx: Context) -> list[Row]:
    n, window, backlog = ctx.sizes.late, ctx.sizes.late_window, ctx.sizes.backlog
    ns = ctx.namespace()
    app = build(ctx.url, ns)
    worker = ctx.worker(ns, 1)
    ctx.wait_registered(worker, ns, 1)
    p50, p99, raw50, raw99, ours_s, raw_s = [], [], [], [], [], []
    try:
        for i in range(ctx.runs):
            late = taskq_lateness(ctx, app, ctx.workdir / f"late-{i}.txt")
            p50.append(statistics.median(late))
            p99.append(percentile(late, 99))
            late = raw_lateness(ctx, ns, i)
            raw50.append(statistics.median(late))
            raw99.append(percentile(late, 99))
    finally:
        app.close()
        ctx.reap()
        ctx.flush()
    for _ in range(ctx.runs):
        ours_s.append(taskq_backlog(ctx, backlog))
        raw_s.append(raw_backlog(ctx, backlog))
        ctx.flush()
    what = f"{n:,} jobs due over {window:g}s"
    limit = BACKLOG_TARGET_S_PER_100K * backlog / 100_000
    return [
        Row(TITLE, f"lateness p50, {what}", "ms", p50, raw50),
        Row(TITLE, f"lateness p99, {what}", "ms", p99, raw99, Target("<=", 50, "ms")),
        Row(TITLE, f"promote a due backlog of {backlog:,}", "s", ours_s, raw_s,
            Target("<=", limit, f"s ({BACKLOG_TARGET_S_PER_100K:g}s/100k)")),
    ]
