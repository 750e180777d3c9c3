"""Figure 8: workflows.

- enqueue of a chord of N members (``chord([noop.s(i)...], count.s())``),
  jobs/s; raw: the same number of ids LPUSHed in chunks of 1,000;
- callback latency: server time from the last member's settle (its
  ``finished``) to the callback's start (its ``started``), over small
  chords run by one worker: p50 and p99 (no raw floor: the settle and the
  release are one script);
- a chain of N ``add`` steps, time per step, next to one job's
  enqueue-to-result round trip (``add.delay(1, 2).result()``);
- the same chain in the queue key layout with its steps alternating two
  queues (each step's end crosses to the other queue's slot through the
  outbox), next to that chain in one queue of the same layout.
"""

from __future__ import annotations

import statistics
import time

from taskq import chain, chord

from .common import Context
from .report import Row, Target, percentile
from .tasks import build

NAME = "workflows"
TITLE = "10 workflows"


def run(ctx: Context) -> list[Row]:
    sz = ctx.sizes
    ns = ctx.namespace()
    app = build(ctx.url, ns)
    noop, count, add = app.tasks["noop"], app.tasks["count"], app.tasks["add"]
    r = ctx.redis
    rate, raw_rate, p50, p99, step_ms, rt_ms = [], [], [], [], [], []
    try:
        for run_no in range(ctx.runs):  # enqueue only: no worker yet
            t0 = time.perf_counter()
            chord([noop.s(i) for i in range(sz.wf_chord)], count.s()).apply_async()
            rate.append(sz.wf_chord / (time.perf_counter() - t0))
            t0 = time.perf_counter()
            ids = [f"{run_no}-{i}" for i in range(sz.wf_chord)]
            for i in range(0, len(ids), 1000):
                r.lpush(f"raw:{ns}:chord", *ids[i:i + 1000])
            raw_rate.append(sz.wf_chord / (time.perf_counter() - t0))
        ctx.flush()
        worker = ctx.worker(ns, 1)
        ctx.wait_registered(worker, ns, 1)
        for _ in range(ctx.runs):
            lat = []
            for _ in range(sz.wf_latency):
                c = chord([noop.s(i) for i in range(10)], count.s()).apply_async()
                c.wait(timeout=60)
                members = [app.job(m).info() for m in app.job(c.id).members()]
                callback = next(m for m in members if m.task == "count")
                last = max(m.finished_at or 0 for m in members if m.task == "noop")
                lat.append(((callback.started_at or 0) - last) * 1000)
            p50.append(statistics.median(lat))
            p99.append(percentile(lat, 99))
            t0 = time.perf_counter()
            w = chain(add.s(0, 1), *[add.s(1) for _ in range(sz.wf_chain - 1)]).apply_async()
            if w.result(timeout=300) != sz.wf_chain:
                raise RuntimeError("the chain's value is wrong")
            step_ms.append((time.perf_counter() - t0) * 1000 / sz.wf_chain)
            trips = []
            for _ in range(50):
                t0 = time.perf_counter()
                add.delay(1, 2).result(timeout=30)
                trips.append((time.perf_counter() - t0) * 1000)
            rt_ms.append(statistics.median(trips))
    finally:
        app.close()
        ctx.reap()
        ctx.flush()
    across_ms, within_ms = chain_over_slots(ctx)
    return [
        Row(TITLE, f"chord of {sz.wf_chord:,}: enqueue", "jobs/s", rate, raw_rate),
        Row(TITLE, f"callback latency p50 ({sz.wf_latency} chords of 10)", "ms", p50, [], Target("<=", 10, "ms")),
        Row(TITLE, f"callback latency p99 ({sz.wf_latency} chords of 10)", "ms", p99, [], Target("<=", 50, "ms")),
        Row(TITLE, f"chain of {sz.wf_chain:,}: per step (raw: one job's round trip)", "ms", step_ms, rt_ms),
        Row(TITLE, f"chain of {sz.wf_chain:,} over 2 queue slots: per step (raw: in 1 slot)", "ms",
            across_ms, within_ms),
    ]


def chain_over_slots(ctx: Context) -> tuple[list[float], list[float]]:
    """Per-step time of a chain alternating two queues' slots, and of one in a single queue's."""
    ns, n = ctx.namespace(), ctx.sizes.wf_chain
    app = build(ctx.url, ns, key_layout="queue")
    add = app.tasks["add"]
    across, within = [], []
    try:
        ctx.worker(ns, 1, queues="default,other", key_layout="queue")
        for q in ("default", "other"):
            add.apply_async((1, 2), queue=q).result(timeout=60)  # the worker serves both slots
        for _ in range(ctx.runs):
            for queues, out in ((("default", "other"), across), (("default", "default"), within)):
                steps = [add.s(1).set(queue=queues[i % 2]) for i in range(1, n)]
                t0 = time.perf_counter()
                if chain(add.s(0, 1).set(queue="default"), *steps).apply_async().result(timeout=300) != n:
                    raise RuntimeError("the chain's value is wrong")
                out.append((time.perf_counter() - t0) * 1000 / n)
    finally:
        app.close()
        ctx.reap()
        ctx.flush()
    return across, within
