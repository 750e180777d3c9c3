"""The asyncio Redis adapter: what producers need (enqueue, result waits,
reads, job control) on ``redis.asyncio`` connections.

It shares everything but the I/O with :class:`~taskq.storage.backend.Backend`:
key names, the scripts and whether the server runs them as functions,
argument packing, reply decoding and error translation. Connections come
from one pool per event loop (a connection belongs to the loop that opened
it), so the adapter is safe from many tasks of a loop at once, and from
several threads each with its own loop (``aio_client.py``: the pools and
the sending); a command is sent again only where the sync adapter would
send it again.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError

from ..errors import BrokerUnavailable, DurabilityUnavailable, error_for_code
from .aio_client import AsyncClient, translate
from .backend import Backend
from .connection import REPLY_MARGIN, Arg, library_answer
from .enqueueing import aof_unconfirmed, enqueue_args, enqueued, enqueued_again
from .records import Field, JobRecord

T = TypeVar("T")


class AsyncBackend(AsyncClient):
    """asyncio I/O for the namespace of a sync :class:`Backend` (whose
    settings and code decisions it shares; it never does I/O through it)."""

    def __init__(self, backend: Backend) -> None:
        super().__init__(backend)
        self.sync = backend
        self.keys = backend.keys
        self.retry_timeout = backend.retry_timeout

    # ------------------------------------------------------------ scripts

    async def load_code(self) -> bool:
        """Load the function library (see ``Backend.load_code``)."""
        try:
            await self.call("FUNCTION", "LOAD", self.sync.library.source)
        except ResponseError as exc:
            loaded = library_answer(exc)
            if loaded is None:
                raise
            self.sync.functions = loaded
            return loaded
        self.sync.functions = True
        return True

    async def script(self, name: str) -> list[Arg]:
        """The command that runs transition ``name``, up to its arguments."""
        if self.sync.functions is None:
            try:
                await self.load_code()
            except RedisConnectionError as exc:
                try:  # a server that wants a password cuts off a client that sends code first: ask why
                    await self.call("PING")
                except Exception as ping:
                    raise translate(ping, self.url) from None
                raise translate(exc, self.url) from None
            except Exception as exc:
                raise translate(exc, self.url) from None
        return self.sync.command(name)  # decided now: no I/O

    async def run(self, name: str, *args: Arg, resend: bool = True, timeout: float | None = None) -> Any:
        """Run transition ``name`` (see ``Backend.run``), reloading lost code."""
        cmd = await self.script(name)
        try:
            return await self.call(*cmd, *args, resend=resend, timeout=timeout)
        except Exception as exc:
            if not Backend.code_missing(exc):
                raise translate(exc, self.url) from None
        try:
            if self.sync.functions and await self.load_code():
                return await self.call(*self.sync.command(name), *args, timeout=timeout)
            script = self.sync.scripts[name]
            return await self.call("EVAL", script.source, 1, self.sync.prefix, *args, timeout=timeout)
        except Exception as exc:
            raise translate(exc, self.url) from None

    async def retrying(self, send: Callable[[], Awaitable[T]]) -> T:
        """Await ``send()`` (idempotent) until it does not raise
        ``BrokerUnavailable``, for ``retry_timeout`` s (as ``Backend.retrying``)."""
        deadline = time.monotonic() + self.retry_timeout
        pause = 0.05
        while True:
            try:
                return await send()
            except BrokerUnavailable:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                await asyncio.sleep(min(pause, left))
                pause = min(pause * 2, 1.0)

    # ------------------------------------------------------------ enqueue

    async def enqueue(self, jobs: Sequence[Sequence[Arg]], durable: bool = False,
                      fresh: bool = False) -> list[tuple[str, bool, str]]:
        """Create jobs; the semantics of ``Backend.enqueue`` (idempotent by id,
        lost connections retried for ``retry_timeout`` s, every send checking
        the ids), always through the script."""
        flat: list[Arg] = ["", *enqueue_args(jobs, check=not fresh)]
        if durable:
            sends = 0

            async def send() -> tuple[Any, DurabilityUnavailable | None]:
                nonlocal sends
                sends += 1
                return await self._enqueue_durable(flat)

            reply, unconfirmed = await self.retrying(send)
            result = (enqueued_again if fresh and sends > 1 else enqueued)(jobs, reply)
            if unconfirmed is not None:
                unconfirmed.results = result
                raise unconfirmed
            return result
        if not fresh:
            return enqueued(jobs, await self.retrying(lambda: self.run("enqueue", *flat)))
        try:
            return enqueued(jobs, await self.run("enqueue", *flat, resend=False))
        except BrokerUnavailable:  # it may have run: the resend checks the ids
            flat[1] = "1"
            return enqueued_again(jobs, await self.retrying(lambda: self.run("enqueue", *flat)))

    async def _enqueue_durable(self, flat: list[Arg]) -> tuple[Any, DurabilityUnavailable | None]:
        """The enqueue script and ``WAITAOF`` on one connection (the source
        is sent: no NOSCRIPT on this path)."""
        try:
            cmd = await self.script("enqueue")
            if not self.sync.functions:
                cmd = ["EVAL", self.sync.scripts["enqueue"].source, 1, self.sync.prefix]
            reply, aof = await self.pipeline(((*cmd, *flat), ("WAITAOF", 1, 0, 2000)))
            if isinstance(reply, Exception) and Backend.code_missing(reply):  # the library was lost
                await self.load_code()
                reply, aof = await self.pipeline(((*self.sync.command("enqueue"), *flat), ("WAITAOF", 1, 0, 2000)))
            if isinstance(reply, Exception):
                raise reply
        except Exception as exc:
            raise translate(exc, self.url) from None
        return reply, aof_unconfirmed(aof)

    # ------------------------------------------------------------ results and control

    async def watch(self, job_id: str, within: float | None = None) -> tuple[str, bytes]:
        """As ``Backend.watch``."""
        timeout = None if within is None else max(within, 0.0) + REPLY_MARGIN
        state, blob = await self.run("watch", "", job_id, timeout=timeout)
        return str(state.decode()), blob

    async def wait_outcome(self, job_id: str, timeout: float) -> bytes | None:
        """As ``Backend.wait_outcome``: the server blocks (BLMOVE of the
        result list onto itself), nothing polls."""
        key = self.keys.result(job_id)
        timeout = max(timeout, 0.001)
        reply: bytes | None = await self.command("BLMOVE", key, key, "RIGHT", "LEFT", timeout,
                                                 timeout=timeout + REPLY_MARGIN, blocking=True)
        return reply

    async def control(self, name: str, job_id: str, *args: Arg, operation: str = "") -> str:
        """As ``Backend.control``."""
        code, state = await self.run(name, "", job_id, *args)
        state = state.decode() if isinstance(state, bytes) else str(state)
        if int(code) < 0:
            raise error_for_code(int(code), job_id, state, operation or name)
        return str(state)

    async def job_hash(self, job_id: str) -> dict[str, bytes]:
        raw = await self.command("HGETALL", self.keys.job(job_id))
        return {raw[i].decode(): raw[i + 1] for i in range(0, len(raw), 2)}

    async def job_record(self, job_id: str) -> JobRecord | None:
        """As ``Backend.job_record``."""
        return JobRecord.from_hash(job_id, await self.job_hash(job_id))

    async def job_state(self, job_id: str) -> str | None:
        """As ``Backend.job_state``."""
        raw = await self.command("HGET", self.keys.job(job_id), Field.STATE)
        return raw.decode() if raw is not None else None

    async def job_task(self, job_id: str) -> str | None:
        """The task name of a job (None if there is no such job)."""
        raw = await self.command("HGET", self.keys.job(job_id), Field.TASK)
        return raw.decode("utf-8", "replace") if raw is not None else None
