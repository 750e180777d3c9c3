"""Tasks used by the process tests. ``build()`` makes an app with these
tasks; the worker imports ``app`` (server and namespace from TASKQ_*)."""

from __future__ import annotations

import os
import time
from typing import Any

from taskq import TaskQ, current_job


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    app = TaskQ("tests", redis_url, namespace=namespace, **settings)

    @app.task(name="add", tombstone=True)
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="fail", tombstone=True)
    def fail(message: str = "bad") -> None:
        raise ValueError(message)

    @app.task(name="sleep", tombstone=True)
    def sleep(seconds: float, value: Any = None) -> Any:
        time.sleep(seconds)
        return value

    @app.task(name="record", tombstone=True)
    def record(path: str, value: str, seconds: float = 0.0) -> str:
        """Append a line to a file (to count executions across processes)."""
        if seconds:
            time.sleep(seconds)
        with open(path, "a") as fh:
            fh.write(f"{value} {os.getpid()} {current_job().attempt}\n")
        return value

    @app.task(name="crash", retry=2, retry_interval=0)
    def crash() -> None:
        os._exit(13)

    @app.task(name="crash_once", tombstone=True, retry=3, retry_interval=0)
    def crash_once(marker: str) -> str:
        """Kills its process on the first attempt only."""
        if not os.path.exists(marker):
            open(marker, "w").close()
            os.kill(os.getpid(), 9)
        return "survived"

    @app.task(name="spin", tombstone=True, timeout=1, timeout_grace=0.5, retry=0)
    def spin() -> None:
        """Ignores the soft timeout: only a kill stops it."""
        while True:
            try:
                time.sleep(0.05)
            except BaseException:
                continue

    @app.task(name="pid", tombstone=True)
    def pid() -> int:
        return os.getpid()

    return app


app = build()
