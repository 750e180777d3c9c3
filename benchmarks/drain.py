"""Figure 3: drain rate of pre-enqueued jobs by real worker processes.

taskq: jobs are enqueued first, then ``taskq worker -c N`` starts; the time
runs from the first job's start (``sa`` in its hash, server clock, read
as soon as it is set) to the last finish (the newest score in
``{ns}:done``), so start-up is excluded.

raw: N consumer processes block on an empty list; once all are connected the
pre-filled list is ``RENAME``d into place. Each does ``BLMOVE src
processing`` + task + ``LREM processing`` one job at a time and reports its
first start and last finish.

ceiling: the one-call task's call alone in a loop, with no queue at all.
Its ratio to the raw consumer is the most any queue could reach on the
one-call figure (claim and ack free): printed next to taskq's, so the
distance between the two is the whole cost of taskq's claim, ack and
execution.

Two bounds split that distance (``benchmarks/raw.py`` scripts, stateless):
taskq's own claim/ack script driving the call in a bare loop, with no
executor around it (the most a Python worker keeping taskq's per-job state
could reach), and a queue that keeps no per-job state at all (one
RPOP+SADD / SREM script call per batch) in the same bare loop.
"""

from __future__ import annotations

from .common import Context, wait_until
from .report import Row, Target
from .tasks import build

NAME = "drain"
TITLE = "3 drain"
TASKS = ("noop", "incr")
PROCS = (1, 2)
FILL_BATCH = 1000


def taskq_rate(ctx: Context, task: str, procs: int, n: int) -> float:
    ns = ctx.namespace()
    app = build(ctx.url, ns)
    jobs = app.tasks[task].map([()] * n)
    app.close()
    r = ctx.redis
    worker = ctx.worker(ns, procs)
    prefix = "{" + ns + "}:"
    first_key = prefix + "j:" + jobs[0].id

    def first_start() -> int | None:
        # Read while the job's hash exists: finished jobs past done_max are deleted.
        worker.check()
        pipe = r.pipeline(transaction=False)
        pipe.hget(first_key, "sa")
        pipe.hget(prefix + "st:c", f"default:{task}|started")
        sa, started = pipe.execute()
        if sa is None and started is not None:
            raise RuntimeError("the first job's hash was gone before its start time was read")
        return int(sa) if sa is not None else None

    start = wait_until(first_start, 60, "the first job to start", interval=0.001)

    def finished() -> bool:
        worker.check()
        return int(r.hget(prefix + "st:c", f"default:{task}|succeeded") or 0) >= n

    wait_until(finished, 60 + n / 100, f"{n} {task} jobs to finish", interval=0.01)
    worker.stop(wait=False)  # reaped at the end of the figure
    (_, end), = r.zrevrange(prefix + "done", 0, 0, withscores=True)
    return n / max((end - start) / 1000, 0.001)


def fill(ctx: Context, key: str, n: int) -> None:
    """Push ``n`` raw job ids onto the list ``key``."""
    for start in range(0, n, FILL_BATCH):
        ctx.redis.lpush(key, *(f"{i:016d}" for i in range(start, min(n, start + FILL_BATCH))))


def raw_rate(ctx: Context, task: str, procs: int, n: int) -> float:
    ns = ctx.namespace()
    r = ctx.redis
    stage, src, processing, ready = (f"raw:{ns}:{k}" for k in ("stage", "src", "processing", "ready"))
    fill(ctx, stage, n)
    consumers = [ctx.raw("consume", src, processing, ready, task, ns) for _ in range(procs)]
    wait_until(lambda: int(r.get(ready) or 0) >= procs, 60, "raw consumers", interval=0.01)
    r.rename(stage, src)
    results = ctx.raw_results(consumers, 60 + n / 100)
    ctx.procs[:] = [p for p in ctx.procs if p not in consumers]
    done = sum(x["n"] for x in results)
    if done != n:
        raise RuntimeError(f"raw consumers took {done} jobs of {n}")
    first = min(x["first"] for x in results if x["n"])
    last = max(x["last"] for x in results)
    return n / max(last - first, 0.001)


def ceiling_rate(ctx: Context, n: int) -> float:
    proc = ctx.raw("calls", n, ctx.namespace())
    (result,) = ctx.raw_results([proc], 60 + n / 100)
    ctx.procs.remove(proc)
    return n / max(result["last"] - result["first"], 0.001)


def bound_rate(ctx: Context, mode: str, n: int) -> float:
    """A bare-loop bound (see the module docstring) on ``n`` one-call jobs."""
    ns = ctx.namespace()
    if mode == "scripts":
        app = build(ctx.url, ns)
        app.tasks["incr"].map([()] * n)
        app.close()
        proc = ctx.raw("scripts", n, ns)
    else:
        src = f"raw:{ns}:src"
        fill(ctx, src, n)
        proc = ctx.raw("stateless", src, f"raw:{ns}:processing", ns)
    (result,) = ctx.raw_results([proc], 60 + n / 100)
    ctx.procs.remove(proc)
    if result["n"] != n:
        raise RuntimeError(f"the {mode} bound took {result['n']} jobs of {n}")
    return n / max(result["last"] - result["first"], 0.001)


BOUNDS = {
    "scripts": "bound: taskq's claim/ack script alone, bare loop",
    "stateless": "bound: a queue with no per-job state, bare loop",
}


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.drain
    ours: dict[tuple[str, int], list[float]] = {(t, p): [] for t in TASKS for p in PROCS}
    raw: dict[tuple[str, int], list[float]] = {(t, p): [] for t in TASKS for p in PROCS}
    ceiling: list[float] = []
    bounds: dict[str, list[float]] = {mode: [] for mode in BOUNDS}
    for _ in range(ctx.runs):
        for key in ours:
            ours[key].append(taskq_rate(ctx, *key, n))
            raw[key].append(raw_rate(ctx, *key, n))
            if key == ("incr", 1):
                ceiling.append(ceiling_rate(ctx, n))
                for mode, values in bounds.items():
                    values.append(bound_rate(ctx, mode, n))
        ctx.flush()
    ctx.reap()  # the stopped workers (each idles in a namespace of its own until it exits)
    targets = {("noop", 1): Target(">=", 10_000, "jobs/s"), ("incr", 1): Target("ratio>=", 2.5)}
    rows = []
    for task in TASKS:
        for procs in PROCS:
            rows.append(Row(TITLE, f"{task} task, {procs} proc, x{n:,}", "jobs/s", ours[task, procs],
                            raw[task, procs], targets.get((task, procs))))
            if (task, procs) == ("incr", 1):
                rows.append(Row(TITLE, f"ceiling: the incr call alone, no queue, x{n:,}", "calls/s", ceiling,
                                raw[task, procs]))
                for mode, label in BOUNDS.items():
                    rows.append(Row(TITLE, f"{label}, x{n:,}", "jobs/s", bounds[mode], raw[task, procs]))

    def speedup(values: dict[tuple[str, int], list[float]]) -> list[float]:
        return [two / one for one, two in zip(values["incr", 1], values["incr", 2])]

    rows.append(Row(TITLE, "incr task, 2 procs / 1 proc", "×", speedup(ours), speedup(raw),
                    Target(">=", 1.7, "×"), show_ratio=False))
    return rows

