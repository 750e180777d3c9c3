"""Edge cases of ``async def`` tasks."""

from __future__ import annotations

import asyncio

from taskq import JobState
from tests.conftest import drain


def test_an_async_task_ending_in_cancelled_error_fails_the_job_not_the_worker(app):
    @app.task(name="gives_up", tombstone=True)
    async def gives_up() -> None:
        inner = asyncio.ensure_future(asyncio.sleep(30))
        asyncio.get_running_loop().call_soon(inner.cancel)
        await inner  # cancelled by someone else: CancelledError ends this coroutine

    job = gives_up.delay()
    drain(app, [job])
    assert job.state == JobState.FAILED
    assert job.info().errors[-1]["type"] == "CancelledError"
