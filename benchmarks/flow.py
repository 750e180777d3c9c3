"""Figure 8: flow control's cost while jobs wait on a rate limit.

10,000 jobs of a task limited to 50 starts/s wait in one queue while
``taskq worker -c 2`` (two processes and its scheduler) serves it. Held
jobs are parked on the server and moved back by the scheduler's flow pass
when their limit allows them, so the server's calls per second stay
bounded by the limit (a claim and a pass per start or so), not by the backlog or by
how busy the workers could be: nobody claims in vain. The rows are the
server's calls per second (``total_commands_processed``: the commands
scripts run count one by one) over a window after the burst, per start,
and the achieved start rate; next to them, the calls per second of
the same worker idle on an empty queue. The drain of an unlimited task is
figure 3.
"""

from __future__ import annotations

import time

from .common import Context, wait_until
from .report import Row, Target
from .tasks import build

NAME = "flow"
TITLE = "9 flow control"
LIMIT = 50  # starts per second (benchmarks.tasks: limited)


def commands(ctx: Context) -> int:
    return int(ctx.redis.info("stats")["total_commands_processed"])


def measure(ctx: Context, held: int, window: float) -> tuple[float, float]:
    """``(server calls/s, starts/s)`` over ``window`` seconds after the burst."""
    ns = ctx.namespace()
    prefix = "{" + ns + "}:"
    if held:
        app = build(ctx.url, ns)
        app.tasks["limited"].map([()] * held)
        app.close()
    worker = ctx.worker(ns, 2)
    ctx.wait_registered(worker, ns, 2)

    def started() -> int:
        worker.check()
        return int(ctx.redis.hget(prefix + "st:c", "default:limited|started") or 0)

    if held:
        wait_until(lambda: started() >= LIMIT + 10, 60, "the burst to start", interval=0.01)
    else:
        time.sleep(0.5)
    c0, s0, t0 = commands(ctx), started(), time.monotonic()
    time.sleep(window)
    c1, s1, t1 = commands(ctx), started(), time.monotonic()
    worker.stop(wait=False)
    return (c1 - c0 - 2) / (t1 - t0), (s1 - s0) / (t1 - t0)  # less the two INFO and HGET reads


def run(ctx: Context) -> list[Row]:
    held = 10_000 if ctx.sizes.drain >= 5000 else 1000
    window = 3.0 if ctx.sizes.drain >= 5000 else 1.0
    calls: list[float] = []
    idle: list[float] = []
    starts: list[float] = []
    for _ in range(ctx.runs):
        c, s = measure(ctx, held, window)
        calls.append(c)
        starts.append(s)
        idle.append(measure(ctx, 0, window)[0])
        ctx.flush()
    ctx.reap()
    per_start = [c / max(s, 1e-9) for c, s in zip(calls, starts)]
    return [
        Row(TITLE, f"server calls/s, {held:,} jobs held by a {LIMIT}/s limit, 2 procs", "calls/s", calls),
        Row(TITLE, "server calls per start, the same", "calls", per_start, target=Target("<=", 100, "calls")),
        Row(TITLE, "server calls/s, the same worker idle on an empty queue", "calls/s", idle),
        Row(TITLE, f"achieved starts/s of the {LIMIT}/s limit", "starts/s", starts,
            target=Target(">=", 0.95 * LIMIT, "starts/s")),
    ]
