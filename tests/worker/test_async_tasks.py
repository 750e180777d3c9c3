"""``async def`` tasks: the worker awaits them on its thread's event loop;
their soft timeout cancels the coroutine, so its cleanup runs."""

from __future__ import annotations

import asyncio
import threading

from taskq import JobState
from tests.conftest import drain


def test_an_async_task_is_awaited_and_its_value_kept(app):
    @app.task(name="fetch", tombstone=True)
    async def fetch(x: int) -> int:
        await asyncio.sleep(0.01)
        return x * 2

    job = fetch.delay(21)
    drain(app, [job])
    assert job.state == JobState.SUCCEEDED
    assert job.result(timeout=5) == 42


def test_an_async_task_without_tombstone_still_runs(app):
    ran = []

    @app.task(name="side_effect")
    async def side_effect() -> None:
        await asyncio.sleep(0)
        ran.append(True)

    job = side_effect.delay()
    drain(app, [job])
    assert job.state == JobState.SUCCEEDED
    assert ran == [True]  # not a coroutine created and dropped


def test_an_async_tasks_exception_fails_the_job_with_its_type(app):
    @app.task(name="bad", tombstone=True)
    async def bad() -> None:
        await asyncio.sleep(0)
        raise ValueError("no such thing")

    job = bad.delay()
    drain(app, [job])
    assert job.state == JobState.FAILED
    err = job.info().errors[-1]
    assert err["type"] == "ValueError" and err["message"] == "no such thing"


def test_the_soft_timeout_cancels_the_coroutine_and_its_cleanup_runs(app):
    cleaned = []

    @app.task(name="slow", timeout=0.1, tombstone=True)
    async def slow() -> None:
        try:
            await asyncio.sleep(30)
        finally:
            cleaned.append(True)

    job = slow.delay()
    drain(app, [job])
    assert job.state == JobState.FAILED
    err = job.info().errors[-1]
    assert err["type"] == "TaskTimeout" and err["kind"] == "timeout"
    assert err["message"] == "task exceeded its timeout of 0.1s"
    assert cleaned == [True]


def test_a_timeout_error_the_task_raises_itself_is_not_its_soft_timeout(app):
    @app.task(name="upstream", timeout=30, tombstone=True)
    async def upstream() -> None:
        await asyncio.sleep(0)
        raise TimeoutError("upstream took too long")

    job = upstream.delay()
    drain(app, [job])
    err = job.info().errors[-1]
    assert err["type"] == "TimeoutError" and err["kind"] == "error"


def test_one_event_loop_serves_every_job_of_a_thread(app):
    @app.task(name="loop_id", tombstone=True)
    async def loop_id() -> int:
        return id(asyncio.get_running_loop())

    first, second = loop_id.delay(), loop_id.delay()
    drain(app, [first, second])
    assert first.result(timeout=5) == second.result(timeout=5)

    # Another thread gets a loop of its own.
    third = loop_id.delay()
    t = threading.Thread(target=drain, args=(app, [third], "w-async-2"))
    t.start()
    t.join(30)
    assert third.result(timeout=5) != first.result(timeout=5)
