"""An app laid out with a slot per queue (``key_layout='queue'``): tasks on
two queues and a periodic task on a third. The worker imports ``app``
(server and namespace from TASKQ_*)."""

from __future__ import annotations

import datetime as dt
import os
from typing import Any

from taskq import TaskQ, current_job


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    settings.setdefault("key_layout", os.environ.get("TASKQ_KEY_LAYOUT", "queue"))
    app = TaskQ("sharded", redis_url, namespace=namespace, **settings)

    @app.task(name="add", tombstone=True, queue="a")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="mul", tombstone=True, queue="b")
    def mul(a: int, b: int) -> int:
        return a * b

    @app.task(name="total", tombstone=True, queue="a")
    def total(values: list[int]) -> int:
        return sum(values)

    @app.task(name="flaky", tombstone=True, queue="b", retry=2, retry_interval=0.2)
    def flaky(marker: str) -> str:
        """Fails on its first attempt (a retry goes through the schedule)."""
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt fails")
        return f"attempt {current_job().attempt}"

    @app.task(name="boom", tombstone=True, queue="b", retry=0)
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="crash_once", tombstone=True, queue="a", retry=3, retry_interval=0)
    def crash_once(marker: str) -> str:
        """Kills its process on the first attempt only."""
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), 9)
        return "survived"

    @app.periodic(every=dt.timedelta(seconds=1), name="beat", queue="beat", catch_up="skip")
    def beat() -> None:
        path = os.environ.get("BEAT_LOG")
        if path:
            with open(path, "a") as fh:
                fh.write(f"{current_job().id}\n")

    return app


app = build()
