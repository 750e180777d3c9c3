"""Running ``async def`` tasks. Each worker thread keeps one event loop, so
what a task's libraries keep on the loop (connection pools) lasts from job
to job; the soft timeout is ``asyncio.timeout``, which cancels the task's
coroutine at its next ``await`` (its ``finally`` blocks run)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any, TypeVar

from ..errors import TaskTimeout

T = TypeVar("T")
_local = threading.local()


def loop() -> asyncio.AbstractEventLoop:
    """This thread's event loop for tasks (made on first use)."""
    current: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    if current is None or current.is_closed():
        current = _local.loop = asyncio.new_event_loop()
    return current


async def _bounded(aw: Awaitable[T], seconds: float) -> T:
    timer = asyncio.timeout(seconds)
    try:
        async with timer:
            return await aw
    except TimeoutError:
        if timer.expired():  # ours, not a TimeoutError the task raised itself
            raise TaskTimeout(f"task exceeded its timeout of {seconds:g}s") from None
        raise


def run(aw: Awaitable[Any], timeout: float | None) -> Any:
    """Run an awaitable to completion on this thread's loop."""
    return loop().run_until_complete(_bounded(aw, timeout) if timeout else _ensure(aw))


async def _ensure(aw: Awaitable[T]) -> T:
    return await aw
