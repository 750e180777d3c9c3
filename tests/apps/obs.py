"""Tasks for the observability tests: one per outcome. ``build()`` makes an
app with them; ``taskq`` commands import ``app`` (server and namespace from
TASKQ_*)."""

from __future__ import annotations

import os
import time
from typing import Any

from taskq import Requeue, TaskQ
from tests.apps import outlast


def _first_time(marker: str) -> bool:
    """True (and leaves a marker) the first time it is called with ``marker``."""
    if os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    app = TaskQ("obs", redis_url, namespace=namespace, **settings)

    @app.task(name="ok")
    def ok(x: int = 0) -> int:
        return x

    @app.task(name="boom")
    def boom() -> None:
        raise ValueError("boom")

    @app.task(name="flaky", retry=1, retry_interval=0)
    def flaky(marker: str) -> str:
        if _first_time(marker):
            raise RuntimeError("first attempt fails")
        return "second time lucky"

    @app.task(name="slow", timeout=0.2, retry=0)
    def slow() -> None:
        outlast(10)

    @app.task(name="hold", resource="printer", on_locked="skip")
    def hold(seconds: float = 0.0) -> None:
        time.sleep(seconds)

    @app.task(name="bounce")
    def bounce(marker: str) -> str:
        if _first_time(marker):
            raise Requeue("not yet")
        return "done"

    @app.task(name="nap")
    def nap(seconds: float) -> None:
        time.sleep(seconds)

    return app


app = build()
