"""Figure 1: single ``task.delay()`` enqueue rate vs a raw ``LPUSH`` loop,
timed in alternating blocks so that both meet the same machine state."""

from __future__ import annotations

import time

from taskq import codec

from .common import Context
from .report import Row, Target
from .tasks import build

NAME = "enqueue"
TITLE = "1 single enqueue"
PAYLOAD = "x" * 95  # encodes to a 100-byte argument payload
BLOCKS = 10


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
        r = ctx.redis
        key = f"raw:{ns}:q"
        r.lpush(key, blob)
        ours_s = raw_s = 0.0
        block = max(1, n // BLOCKS)
        for _ in range(BLOCKS):  # alternating blocks: both see the same machine
            t0 = time.perf_counter()
            for _ in range(block):
                task.delay(PAYLOAD)
            t1 = time.perf_counter()
            for _ in range(block):
                r.lpush(key, blob)
            t2 = time.perf_counter()
            ours_s += t1 - t0
            raw_s += t2 - t1
        ours.append(block * BLOCKS / ours_s)
        raw.append(block * BLOCKS / raw_s)
        app.close()
        ctx.flush()
    return [Row(TITLE, f"delay() x{n:,}, {len(blob)} B args", "jobs/s", ours, raw, Target("ratio>=", 0.9))]
