"""Tasks the benchmark workers run. ``app`` takes its server and namespace
from TASKQ_REDIS_URL / TASKQ_NAMESPACE (``build()`` for explicit ones).

The one-Redis-call task and the raw consumers share :func:`one_call`, so
both sides do the same work per job.
"""

from __future__ import annotations

import os
import time
from typing import Any

import redis

from taskq import TaskQ

_clients: dict[tuple[int, str], redis.Redis] = {}


def task_client(url: str) -> redis.Redis:
    """The task's own client (one per process, made after fork)."""
    key = (os.getpid(), url)
    c = _clients.get(key)
    if c is None:
        c = _clients[key] = redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=30.0,
                                                 protocol=2, health_check_interval=0)
    return c


def one_call(url: str, namespace: str) -> None:
    """The work of the one-Redis-call task: INCR a counter."""
    task_client(url).incr(f"bench:{namespace}:counter")


def record_lateness(due_ms: float, path: str) -> None:
    """Append how late (ms) this call runs after ``due_ms`` (epoch ms) to ``path``."""
    late = time.time() * 1000 - due_ms
    with open(path, "a") as fh:
        fh.write(f"{late:.3f}\n")


def build(redis_url: str | None = None, namespace: str | None = None) -> TaskQ:
    app = TaskQ("bench", redis_url, namespace=namespace)

    @app.task(name="noop")
    def noop(*args: Any) -> None:
        return None

    @app.task(name="incr")
    def incr(*args: Any) -> None:
        one_call(app.settings.redis_url or app.url, app.settings.namespace)

    @app.task(name="add", tombstone=True)
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="late")
    def late(due_ms: float, path: str) -> None:
        record_lateness(due_ms, path)

    return app


app = build()
