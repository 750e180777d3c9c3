"""Tasks for the scheduling and job-control tests, and helpers to drive a
worker in-process.

``build()`` makes an app with these tasks; the CLI and worker processes
import ``app`` (server and namespace from ``TASKQ_*``), which also has a
periodic task ``tick`` (every second, on its own queue ``periodic``) and a cron task
``morning`` (9:30 on weekdays, Paris time).

Tasks that coordinate with a test use keys under the app's namespace
(``<prefix>test:<name>``), so they are removed with the namespace.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable
from typing import Any

from taskq import Requeue, Retry, TaskQ, current_job
from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig

ERRORS: dict[str, type[BaseException]] = {
    "ValueError": ValueError, "KeyError": KeyError, "TypeError": TypeError, "RuntimeError": RuntimeError,
    "SystemExit": SystemExit, "KeyboardInterrupt": KeyboardInterrupt,
}


def scratch_key(app: TaskQ, name: str) -> str:
    """A key of the app's namespace for test bookkeeping."""
    return f"{app.backend.prefix}test:{name}"


def build(redis_url: str | None = None, namespace: str | None = None, *, periodic: bool = False,
          **settings: Any) -> TaskQ:
    app = TaskQ("control", redis_url, namespace=namespace, **settings)

    def client() -> Any:
        return app.backend.client

    @app.task(name="noop")
    def noop(*args: Any, **kwargs: Any) -> None:
        return None

    @app.task(name="echo", tombstone=True)
    def echo(value: Any = None) -> Any:
        return value

    @app.task(name="fail", tombstone=True)
    def fail(message: str = "bad", exc_type: str = "ValueError") -> None:
        raise ERRORS[exc_type](message)

    @app.task(name="flaky", retry=1, retry_interval=0)
    def flaky(exc_type: str = "ValueError") -> None:
        """Fails every attempt (attempt count decided by its retry flags)."""
        raise ERRORS[exc_type](f"attempt {current_job().attempt}")

    @app.task(name="backoff", retry=4, retry_interval=10, retry_backoff=2, retry_max_interval=25)
    def backoff() -> None:
        raise RuntimeError(f"attempt {current_job().attempt}")

    @app.task(name="retry_later", retry=3)
    def retry_later(countdown: float) -> str:
        if current_job().attempt == 1:
            raise Retry(countdown=countdown)
        return "ok"

    @app.task(name="requeue_once", tombstone=True)
    def requeue_once(marker: str) -> str:
        """Gives itself back to the queue the first time it runs."""
        if client().set(scratch_key(app, marker), "1", nx=True):
            raise Requeue("not yet")
        return "ran"

    @app.task(name="wait_cancel", tombstone=True)
    def wait_cancel(limit: float = 20.0) -> str:
        """Polls for a cancel request, then stops at a checkpoint."""
        ctx = current_job()
        client().rpush(scratch_key(app, "started"), ctx.id)
        deadline = time.monotonic() + limit
        while not ctx.cancel_requested and time.monotonic() < deadline:
            time.sleep(0.01)
        seen = ctx.cancel_requested
        ctx.checkpoint()
        return f"not cancelled ({seen})"

    @app.task(name="block", tombstone=True)
    def block(name: str, limit: float = 20.0) -> str:
        """Runs until the test pushes to the list ``test:<name>`` (or ``limit`` s)."""
        ctx = current_job()
        client().rpush(scratch_key(app, "started"), ctx.id)
        client().blpop([scratch_key(app, name)], timeout=limit)
        return "released"

    @app.task(name="progress", tombstone=True)
    def progress(name: str) -> str:
        current_job().set_progress(0.5, "half")
        client().rpush(scratch_key(app, "started"), current_job().id)
        client().blpop([scratch_key(app, name)], timeout=20)
        return "done"

    @app.task(name="sleepy", tombstone=True)
    def sleepy(seconds: float) -> str:
        time.sleep(seconds)
        return "slept"

    def record_span(seconds: float, what: str) -> str:
        """Counts jobs running at once in ``test:running`` and logs the span."""
        r = client()
        running = r.incr(scratch_key(app, "running"))
        start = time.time()
        try:
            r.rpush(scratch_key(app, "max"), running)
            time.sleep(seconds)
        finally:
            r.decr(scratch_key(app, "running"))
            r.rpush(scratch_key(app, "spans"), f"{what} {current_job().id} {start:.6f} {time.time():.6f}")
        return what

    @app.task(name="locked_skip", resource="printer", on_locked="skip")
    def locked_skip(seconds: float = 0.02) -> str:
        return record_span(seconds, "skip")

    @app.task(name="locked_wait", resource="printer", on_locked="wait")
    def locked_wait(seconds: float = 0.02) -> str:
        return record_span(seconds, "wait")

    @app.task(name="locked_fail", resource="printer")
    def locked_fail() -> None:
        raise ValueError("boom")

    @app.task(name="locked_sleep", resource="printer", timeout=0.2, timeout_grace=0.2)
    def locked_sleep(seconds: float) -> None:
        time.sleep(seconds)

    @app.task(name="stamp")
    def stamp(tag: str) -> None:
        client().rpush(scratch_key(app, "order"), tag)

    def on_ok(job_id: str, value: Any) -> None:
        state = client().hget(app.backend.keys.job(job_id), "s")
        client().rpush(scratch_key(app, "hooks"), f"success {job_id} {value} {state.decode()}")

    def on_fail(job_id: str, exc: BaseException | None) -> None:
        state = client().hget(app.backend.keys.job(job_id), "s")
        client().rpush(scratch_key(app, "hooks"), f"failure {job_id} {type(exc).__name__} {state.decode()}")

    def on_ok_raises(job_id: str, value: Any) -> None:
        raise RuntimeError("hook exploded")

    @app.task(name="hooked_ok", on_success=on_ok, tombstone=True)
    def hooked_ok(value: int) -> int:
        return value * 2

    @app.task(name="hooked_fail", on_failure=on_fail)
    def hooked_fail() -> None:
        raise KeyError("missing")

    @app.task(name="hook_raises", on_success=on_ok_raises, tombstone=True)
    def hook_raises() -> str:
        return "fine"

    if periodic:
        # catch_up="all": a scheduler late on a loaded machine still enqueues every tick
        @app.periodic(every=dt.timedelta(seconds=1), name="tick", queue="periodic", catch_up="all")
        def tick() -> None:
            return None

        @app.periodic("30 9 * * 1-5", tz="Europe/Paris", name="morning", queue="periodic")
        def morning() -> None:
            return None

    return app


app = build(periodic=True)


# ---------------------------------------------------------------- in-process worker


def consumer(app: TaskQ, worker_id: str = "w1", **config: Any) -> Consumer:
    """A registered, heartbeating Consumer driven by ``step()`` (no threads)."""
    config.setdefault("concurrency", 1)
    config.setdefault("block_timeout", 0.05)
    c = Consumer(app, WorkerConfig(**config), worker_id)
    app.backend.register_tasks({n: app.options_for(n).max_attempts for n in app.tasks})
    c.heartbeat.beat()
    return c


def run_until(c: Consumer, cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    """Step the consumer until ``cond()`` is truthy."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        c.step()


def stop(c: Consumer) -> None:
    c.stopping.set()
    c.shutdown()
