"""Runs a ``taskq worker`` process next to an example, on the example app's server."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from taskq import TaskQ

HERE = Path(__file__).resolve().parent


@contextmanager
def running_worker(app: TaskQ, app_path: str, *, concurrency: int = 1, loglevel: str = "ERROR",
                   wait_ready: bool = False) -> Iterator[subprocess.Popen[bytes]]:
    """``taskq worker APP_PATH`` for the duration of the block; stopped with SIGTERM
    (running jobs finish) at its end."""
    worker = subprocess.Popen(
        [sys.executable, "-m", "taskq_cli.main", "worker", app_path, "-c", str(concurrency), "--loglevel", loglevel],
        cwd=HERE,
        env={**os.environ, "TASKQ_REDIS_URL": app.url},  # the same server as this process
    )
    try:
        deadline = time.monotonic() + 30
        while wait_ready and not app.workers():
            if worker.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the worker did not start")
            time.sleep(0.05)
        yield worker
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
