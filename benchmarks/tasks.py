"""Tasks the benchmark workers run. ``app`` takes its server and namespace
from TASKQ_REDIS_URL / TASKQ_NAMESPACE (``build()`` for explicit ones).

The work itself lives in ``work.py``, shared with the raw floors, so both
sides do the same work per job.
"""

from __future__ import annotations

from typing import Any

from taskq import TaskQ

from .work import one_call, record_lateness


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    app = TaskQ("bench", redis_url, namespace=namespace, **settings)

    @app.task(name="noop")
    def noop(*args: Any) -> None:
        return None

    @app.task(name="incr")
    def incr(*args: Any) -> None:
        one_call(app.settings.redis_url or app.url, app.settings.namespace)

    @app.task(name="add", tombstone=True)
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="count")
    def count(values: list[Any], *args: Any) -> int:
        return len(values)

    @app.task(name="limited", rate_limit="50/s")
    def limited(*args: Any) -> None:
        return None

    @app.task(name="late")
    def late(due_ms: float, path: str) -> None:
        record_lateness(due_ms, path)

    return app


app = build()
