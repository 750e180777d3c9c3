"""Figure 1: single ``task.delay()`` enqueue rate vs a raw ``LPUSH`` loop."""

from __future__ import annotations

import time

from taskq import codec

from .common import Context
from .report import Row, Target
from .tasks import build

NAME = "enqueue"
TITLE = "1 single enqueue"
PAYLOAD = "x" * 95  # encodes to a 100-byte argument payload


def payload_blob() -> bytes:
    return codec.encode_args((PAYLOAD,), {})


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.single
    ours, raw = [], []
    blob = payload_blob()
    for _ in range(ctx.runs):
        ns = ctx.namespace()
        app = build(ctx.url, ns)
        task = app.tasks["noop"]
        task.delay(PAYLOAD)  # connect and load the script outside the timing
        t0 = time.perf_counter()
        for _ in range(n):
            task.delay(PAYLOAD)
        ours.append(n / (time.perf_counter() - t0))
        app.close()

        r = ctx.redis
        key = f"raw:{ns}:q"
        r.lpush(key, blob)
        t0 = time.perf_counter()
        for _ in range(n):
            r.lpush(key, blob)
        raw.append(n / (time.perf_counter() - t0))
        ctx.flush()
    return [Row(TITLE, f"delay() x{n:,}, {len(blob)} B args", "jobs/s", ours, raw, Target("ratio>=", 0.9))]
