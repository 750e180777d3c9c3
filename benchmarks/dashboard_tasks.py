"""Tasks of the dashboard figure: 50 tasks (``dash.t00`` .. ``dash.t49``)
that fail when asked to. ``app`` takes its server and namespace from
TASKQ_REDIS_URL / TASKQ_NAMESPACE."""

from __future__ import annotations

from taskq import TaskQ

TASKS = 50


def build(redis_url: str | None = None, namespace: str | None = None) -> TaskQ:
    app = TaskQ("bench-dashboard", redis_url, namespace=namespace, failed_max=1_000_000)

    def work(fail: bool = False) -> None:
        if fail:
            raise ValueError("declined by the payment provider")

    for i in range(TASKS):
        app.task(name=f"dash.t{i:02d}")(work)
    return app


app = build()
