"""Long-lived processes other than workers (``taskq scheduler``, ``taskq
metrics``) and the result waits of a producer, for the failover tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from taskq import Job, JobState
from tests.conftest import ROOT, WorkerProcess


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_service(log_path: Path, env: dict[str, str], *args: str) -> WorkerProcess:
    """``taskq ARGS...`` as a subprocess logging to ``log_path`` (stop it with ``.stop()``)."""
    with open(log_path, "wb") as fh:
        proc = subprocess.Popen([sys.executable, "-m", "taskq_cli.main", *args], cwd=ROOT, env=env,
                                stdout=fh, stderr=subprocess.STDOUT)
    return WorkerProcess(proc, log_path)


def scrape(port: int) -> str | None:
    """The body of ``/metrics`` when it serves figures (200), else None."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=2) as reply:
            body = reply.read().decode()
    except (urllib.error.URLError, OSError):
        return None
    return body if "taskq_scheduled_jobs" in body else None


class ResultWait(threading.Thread):
    """``job.result(timeout)`` in a thread: its value (or error) and when it returned."""

    def __init__(self, job: Job[Any], timeout: float) -> None:
        super().__init__(daemon=True)
        self.job = job
        self.timeout = timeout
        self.value: Any = None
        self.error: BaseException | None = None
        self.returned_at: float | None = None

    def run(self) -> None:
        try:
            self.value = self.job.result(timeout=self.timeout)
        except BaseException as exc:  # reported by the test
            self.error = exc
        self.returned_at = time.monotonic()


class Finishes:
    """``on_finish`` callbacks that record each job's final state and when it fired."""

    def __init__(self) -> None:
        self.fired: dict[str, tuple[JobState, float]] = {}
        self._lock = threading.Lock()

    def __call__(self, job: Job[Any], state: JobState) -> None:
        with self._lock:
            self.fired.setdefault(job.id, (state, time.monotonic()))
