"""Tasks for ``tests/chaos/stress.py`` (the worker imports ``app``; server
and namespace from TASKQ_*). A job's arguments say how it ends."""

from __future__ import annotations

import os
import random
import time
from typing import Any

from taskq import Requeue, Retry, TaskQ, current_job


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    app = TaskQ("stress", redis_url, namespace=namespace, **settings)

    def body(n: int, ms: int, mode: str) -> int:
        """Runs ``ms`` ms (a cancel checkpoint every 10 ms), then ends by ``mode``:
        ok, fail, retry (first attempt), requeue (at random), crash (the
        process exits on the first attempt, and again on re-runs after it while
        its losses stay within max_lost: they use no attempt)."""
        job = current_job()
        if mode == "crash" and job.attempt == 1:
            os._exit(3)
        end = time.monotonic() + ms / 1000
        while time.monotonic() < end:
            job.checkpoint()
            time.sleep(min(0.01, max(0.0, end - time.monotonic())))
        if mode == "fail":
            raise ValueError("boom")
        if mode == "retry" and job.attempt == 1:
            raise Retry(countdown=0.05)
        if mode == "requeue" and random.random() < 0.5:
            raise Requeue(countdown=0.03)
        return n

    @app.task(name="w", retry=2, retry_interval=0.05)
    def w(n: int, ms: int, mode: str) -> int:
        return body(n, ms, mode)

    @app.task(name="wt", retry=1, retry_interval=0, tombstone=True, tombstone_ttl=5)
    def wt(n: int, ms: int, mode: str) -> int:
        return body(n, ms, mode)

    return app


app = build()
