"""Tasks for the flow-control process tests (tests/process/test_flow_control.py).

Tasks that report to a test use keys under the app's namespace
(``<prefix>test:<name>``), so they are removed with the namespace.
"""

from __future__ import annotations

import os
import time
from typing import Any

from taskq import TaskQ, current_job


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    app = TaskQ("flow", redis_url, namespace=namespace, **settings)

    def key(name: str) -> str:
        return f"{app.backend.prefix}test:{name}"

    @app.task(name="limited", rate_limit="50/s")
    def limited(i: int) -> int:
        return i

    @app.task(name="free")
    def free(i: int) -> int:
        return i

    @app.task(name="capped", concurrency=3)
    def capped(seconds: float) -> None:
        """Records how many runs of it are alive when it starts (runs of a
        killed process do not count: their pid is gone)."""
        c = app.backend.client
        me = f"{os.getpid()}:{current_job().id}"
        c.sadd(key("running"), me)
        alive = 0
        for member in c.smembers(key("running")):
            pid = int(member.decode().split(":")[0])
            try:
                os.kill(pid, 0)
                alive += 1
            except ProcessLookupError:
                pass
        c.rpush(key("observed"), alive)
        time.sleep(seconds)
        c.srem(key("running"), me)

    @app.task(name="nap", tombstone=True)
    def nap(seconds: float) -> float:
        time.sleep(seconds)
        return seconds

    @app.task(name="elsewhere", queue="other", tombstone=True)
    def elsewhere() -> str:
        return "ran"

    @app.task(name="holder", resource="r", tombstone=True)
    def holder(seconds: float) -> None:
        time.sleep(seconds)

    @app.task(name="waiter", resource="r", on_locked="wait", tombstone=True)
    def waiter() -> None:
        pass

    return app


app = build()
