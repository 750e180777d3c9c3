"""Tasks for the workflow tests (in-process and worker processes): the
worker imports ``app`` (server and namespace from TASKQ_*)."""

from __future__ import annotations

import os
import time
from typing import Any

from taskq import TaskQ


def append_line(path: str, line: str) -> None:
    """One O_APPEND write (atomic across processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    app = TaskQ("flows", redis_url, namespace=namespace, **settings)

    @app.task(name="add")
    def add(a: int, b: int) -> int:
        return a + b

    @app.task(name="collect")
    def collect(values: list[Any], *extra: Any, trace: str = "") -> list[Any]:
        if trace:
            append_line(trace, f"{os.getpid()} {len(values)}")
        return [values, *extra]

    @app.task(name="echo")
    def echo(*args: Any, **kwargs: Any) -> Any:
        return [list(args), kwargs]

    @app.task(name="boom", retry=0)
    def boom(*args: Any) -> None:
        raise ValueError("nope")

    @app.task(name="step", retry=2, retry_interval=0)
    def step(value: int, trace: str = "", pause: float = 0.0) -> int:
        """One chain step: records its input, returns it + 1."""
        time.sleep(pause)
        if trace:
            append_line(trace, f"{value}")
        return value + 1

    @app.task(name="member", retry=2, retry_interval=0)
    def member(i: int, pause: float = 0.0) -> int:
        time.sleep(pause)
        return i * 3

    return app


app = build()
