"""Tasks for the crash-safety tests: everything in ``tests.apps.basic`` plus
tasks that leave traces in files, so a test can see which process ran which
attempt. The worker imports ``app`` (server and namespace from TASKQ_*)."""

from __future__ import annotations

import os
import sys
import threading
import time
from typing import Any

from taskq import TaskQ, TaskTimeout, current_job
from tests.apps import basic, outlast


def append_line(path: str, line: str) -> None:
    """Append one line with a single O_APPEND write (atomic across processes)."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, (line + "\n").encode())
    finally:
        os.close(fd)


def build(redis_url: str | None = None, namespace: str | None = None, **settings: Any) -> TaskQ:
    app = basic.build(redis_url, namespace, **settings)

    @app.task(name="slow_first", tombstone=True, retry=0)  # a lost run uses no attempt
    def slow_first(path: str, seconds: float) -> int:
        """Records ``<pid> <attempt> <token>``; the first run then sleeps
        ``seconds``. Returns how many runs the trace holds."""
        job = current_job()
        first = not os.path.exists(path)
        append_line(path, f"{os.getpid()} {job.attempt} {job.fencing_token}")
        if first:
            time.sleep(seconds)
        with open(path) as fh:
            return len(fh.readlines())

    @app.task(name="soft", tombstone=True, timeout=0.5, timeout_grace=10, retry=0)
    def soft(path: str) -> None:
        """Sleeps past its timeout; records that it saw TaskTimeout, then re-raises."""
        try:
            outlast(10)
        except TaskTimeout:
            append_line(path, f"saw TaskTimeout in {os.getpid()}")
            raise
        append_line(path, "slept through")

    @app.task(name="wait_file", tombstone=True, retry=0)
    def wait_file(path: str, trace: str = "", started: str = "", limit: float = 60.0) -> int:
        """Creates ``started`` (if given), runs until ``path`` exists (a test says
        when), then records one execution in ``trace`` (if given); returns its pid."""
        if started:
            append_line(started, str(os.getpid()))
        deadline = time.monotonic() + limit
        while not os.path.exists(path):
            if time.monotonic() > deadline:
                raise TimeoutError(f"{path} never appeared")
            time.sleep(0.02)
        if trace:
            append_line(trace, f"{os.getpid()} {current_job().attempt}")
        return os.getpid()

    @app.task(name="mark", retry=100, retry_interval=0)
    def mark(directory: str, n: int, seconds: float = 0.0) -> None:
        """Records one execution of job ``n`` (a line in a per-process file)."""
        if seconds:
            time.sleep(seconds)
        append_line(os.path.join(directory, f"{os.getpid()}.log"), str(n))

    @app.task(name="mark0", retry=0)
    def mark0(directory: str, n: int, seconds: float = 0.0) -> None:
        """``mark`` with retry=0: only max_lost re-runs it after a kill."""
        mark(directory, n, seconds)

    def work(directory: str, n: int, seconds: float) -> None:
        """Records the start and the end of each run of job ``n`` (lines
        ``s <n> <time>`` and ``e <n> <time>`` in a per-process file): a run
        with a start and no end was interrupted; two ends, a job that had
        finished ran again."""
        path = os.path.join(directory, f"{os.getpid()}.log")
        append_line(path, f"s {n} {time.time():.6f}")
        time.sleep(seconds)
        append_line(path, f"e {n} {time.time():.6f}")

    # the same work as two tasks: one always quicker than flush_interval, so
    # its outcomes wait for their batch while the next job runs
    app.task(name="work", retry=100, retry_interval=0)(work)
    app.task(name="work_quick", retry=100, retry_interval=0)(work)

    @app.task(name="exit_first", tombstone=True, retry=1, retry_interval=0)
    def exit_first(path: str, how: str) -> int:
        """Records ``<pid> <attempt>``; the first run then leaves by ``how``:
        ``sys.exit``, ``KeyboardInterrupt`` or ``os._exit`` (code 0)."""
        job = current_job()
        first = not os.path.exists(path)
        append_line(path, f"{os.getpid()} {job.attempt}")
        if first:
            if how == "sys.exit":
                sys.exit()
            if how == "KeyboardInterrupt":
                raise KeyboardInterrupt
            os._exit(0)
        return os.getpid()

    @app.task(name="hang_at", timeout=1, timeout_grace=0.5, retry=1, retry_interval=0)
    def hang_at(trace: str, n: int, hang: int) -> int:
        """Records ``<n> <attempt>``; job ``hang``'s first attempt then ignores
        its soft timeout until the hard one kills the process."""
        job = current_job()
        append_line(trace, f"{n} {job.attempt}")
        if n == hang and job.attempt == 1:
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                try:
                    time.sleep(0.05)
                except TaskTimeout:
                    pass
        return n

    barriers: dict[int, threading.Barrier] = {}

    @app.task(name="together", tombstone=True, retry=0)
    def together(parties: int) -> int:
        """Returns (its pid) only once ``parties`` of these jobs run at the same
        time in this process; fails after 20 s otherwise."""
        barriers.setdefault(parties, threading.Barrier(parties)).wait(timeout=20)
        return os.getpid()

    return app


app = build()
