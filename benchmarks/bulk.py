"""Figure 2: bulk enqueue (``task.map`` / ``app.enqueue_many``) vs raw
pipelined ``LPUSH`` in batches of 1,000."""

from __future__ import annotations

import time

from .common import Context
from .enqueue import PAYLOAD, payload_blob
from .report import Row, Target
from .tasks import build

NAME = "bulk"
TITLE = "2 bulk enqueue"
BATCH = 1000


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.bulk
    ours, raw = [], []
    blob = payload_blob()
    items = [(PAYLOAD,)] * n
    for _ in range(ctx.runs):
        ns = ctx.namespace()
        app = build(ctx.url, ns)
        task = app.tasks["noop"]
        task.delay(PAYLOAD)  # connect and load the script outside the timing
        t0 = time.perf_counter()
        task.map(items)
        ours.append(n / (time.perf_counter() - t0))
        app.close()

        r = ctx.redis
        key = f"raw:{ns}:q"
        t0 = time.perf_counter()
        for start in range(0, n, BATCH):
            pipe = r.pipeline(transaction=False)
            for _ in range(min(BATCH, n - start)):
                pipe.lpush(key, blob)
            pipe.execute()
        raw.append(n / (time.perf_counter() - t0))
        ctx.flush()
    return [Row(TITLE, f"map() x{n:,}", "jobs/s", ours, raw, Target("ratio>=", 0.6))]
