"""Running ``async def`` tasks. Each worker thread keeps one event loop, so
what a task's libraries keep on the loop (connection pools) lasts from job
to job; the soft timeout is ``asyncio.timeout``, which cancels the task's
coroutine at its next ``await`` (its ``finally`` blocks run)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine
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


async def _bounded(aw: Awaitable[T], seconds: float, limit: float) -> T:
    timer = asyncio.timeout(seconds)
    try:
        async with timer:
            return await aw
    except TimeoutError:
        if timer.expired():  # ours, not a TimeoutError the task raised itself
            raise TaskTimeout(f"task exceeded its timeout of {limit:g}s") from None
        raise


def run(coro: Coroutine[Any, Any, T], timeout: float | None, left: float | None = None) -> T:
    """Run a task's coroutine to completion on this thread's loop, for at most
    ``left`` seconds of its ``timeout`` (default: all of it). Whatever
    it leaves behind (tasks it started and did not await) is cancelled when
    it ends, as ``asyncio.run`` does: no part of one job runs during the next."""
    lp = loop()
    main = lp.create_task(_bounded(coro, left if left is not None else timeout, timeout) if timeout else coro)
    try:
        return lp.run_until_complete(main)
    finally:
        _cancel_all(lp)


def _cancel_all(lp: asyncio.AbstractEventLoop) -> None:
    pending = asyncio.all_tasks(lp)
    if not pending:
        return
    for task in pending:
        task.cancel()
    lp.run_until_complete(asyncio.gather(*pending, return_exceptions=True))


def close() -> None:
    """Close this thread's loop, if it made one (a consumer thread ending)."""
    lp: asyncio.AbstractEventLoop | None = getattr(_local, "loop", None)
    _local.loop = None
    if lp is not None and not lp.is_closed():
        _cancel_all(lp)
        lp.run_until_complete(lp.shutdown_asyncgens())
        lp.close()
