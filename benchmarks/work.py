"""The work the benchmark tasks do, shared with the raw floors (which must
not pay for importing taskq)."""

from __future__ import annotations

import os
import time

import redis

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
