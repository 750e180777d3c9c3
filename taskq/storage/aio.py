"""The asyncio Redis adapter: what producers need (enqueue, result waits,
reads, job control) on ``redis.asyncio`` connections.

It shares everything but the I/O with :class:`~taskq.storage.backend.Backend`:
key names, the scripts and whether the server runs them as functions,
argument packing, reply decoding and error translation. Connections come
from one pool per event loop (a connection belongs to the loop that opened
it), so the adapter is safe from many tasks of a loop at once, and from
several threads each with its own loop. Commands go on a pooled connection
as pre-packed bytes with the raw reply read back, as ``wire.py`` does for
the sync hot path; a command is sent again only where the sync adapter
would send it again.
"""

from __future__ import annotations

import asyncio
import time
import weakref
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BrokerUnavailable, DurabilityUnavailable, error_for_code
from .aio_route import AsyncRoute, redirected
from .backend import Backend
from .connection import REPLY_MARGIN, Arg, library_answer, translated
from .enqueueing import aof_unconfirmed, enqueue_args, enqueued, enqueued_again
from .records import Field, JobRecord
from .wire import MAX_REDIRECTS, pack

T = TypeVar("T")
LOST = (RedisConnectionError, OSError)
# Connections per loop for commands the server answers at once: many
# concurrent tasks share them (waiting their turn) rather than each opening
# one. A result wait holds its connection for a whole slice: those come
# from a second pool, one connection per waiting task.
SHORT_CONNECTIONS = 32
WAIT_CONNECTIONS = 10_000


class AsyncBackend:
    """asyncio I/O for the namespace of a sync :class:`Backend` (whose
    settings and code decisions it shares; it never does I/O through it)."""

    def __init__(self, backend: Backend) -> None:
        self.sync = backend
        self.url = backend.url
        self.keys = backend.keys
        self.retry_timeout = backend.retry_timeout
        self.route = AsyncRoute(backend)  # a Sentinel group's or cluster slot's master, found in a thread
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any, str]] = (
            weakref.WeakKeyDictionary())

    # ------------------------------------------------------------ connections

    async def pool(self, blocking: bool = False) -> aioredis.ConnectionPool:
        """The running loop's pool (made on first use, and again for a new
        master): for commands the server answers at once, or (``blocking``)
        for result waits."""
        loop = asyncio.get_running_loop()
        url = await self.route.url()
        pools = self._pools.get(loop)
        if pools is not None and pools[2] != url:  # the master moved: the old pools go
            del self._pools[loop]
            for old in pools[:2]:
                await old.disconnect()
            pools = None
        if pools is None:
            kwargs: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 30.0, "protocol": 2,
                                      "health_check_interval": 0}
            pools = self._pools[loop] = (
                aioredis.BlockingConnectionPool.from_url(url, max_connections=SHORT_CONNECTIONS,
                                                         timeout=None, **kwargs),
                aioredis.ConnectionPool.from_url(url, max_connections=WAIT_CONNECTIONS, **kwargs), url)
        return pools[1] if blocking else pools[0]

    async def aclose(self) -> None:
        """Close the running loop's connections (the adapter may be used again)."""
        pools = self._pools.pop(asyncio.get_running_loop(), None)
        for pool in (pools or ())[:2]:
            await pool.disconnect()

    async def pipeline(self, commands: Sequence[Sequence[Arg]], *, timeout: float | None = None,
                       resend: bool = True, blocking: bool = False) -> list[Any]:
        """Send commands in one write and read every reply; an error reply is
        returned in its place as a ``ResponseError``. A failure of a
        connection that was idle in the pool sends them once more on a new
        one (``resend=False``: never). ``timeout``: seconds for the replies
        (the connection's 30 s otherwise); past it the connection is dropped
        (the server may still run the commands) and ``RedisTimeoutError``
        raised. redis-py errors are raised untranslated. ``blocking``: a
        command the server holds (a result wait), on a connection of its own.
        A reply from a node that is not (or no longer) the master sends them
        again to the master found anew (up to MAX_REDIRECTS times)."""
        data = b"".join([pack(c) for c in commands])
        for _ in range(MAX_REDIRECTS):
            replies = await self._send(data, len(commands), timeout, resend, blocking)
            if self.route.direct or not any(redirected(r) for r in replies):
                return replies
            self.route.lost(next(r for r in replies if redirected(r)))
            await asyncio.sleep(0.05)
        return replies

    async def _send(self, data: bytes, n: int, timeout: float | None, resend: bool, blocking: bool) -> list[Any]:
        for attempt in (1, 2):
            try:
                pool = await self.pool(blocking)
                conn = await pool.get_connection()  # type: ignore[no-untyped-call]
            except LOST:
                self.route.lost()  # a Sentinel or cluster master may have moved: look again
                raise
            reused = attempt == 1 and conn.is_connected and getattr(conn, "_taskq_used", False)
            try:
                await conn.send_packed_command(data, False)
                if timeout is None:
                    return await self._read(conn, n)
                try:
                    async with asyncio.timeout(timeout):
                        return await self._read(conn, n)
                except TimeoutError:
                    raise RedisTimeoutError(f"no reply within {timeout:g}s") from None
            except LOST:
                await conn.disconnect(nowait=True)
                if not (reused and resend):
                    self.route.lost()  # a Sentinel or cluster master may have moved: look again
                    raise
            except BaseException:  # a timeout, a cancelled task: unread replies would answer the next caller
                await conn.disconnect(nowait=True)
                raise
            finally:
                conn._taskq_used = True
                await pool.release(conn)
        raise AssertionError("unreachable")  # pragma: no cover

    @staticmethod
    async def _read(conn: Any, n: int) -> list[Any]:
        replies: list[Any] = []
        for _ in range(n):
            try:
                replies.append(await conn.read_response(disconnect_on_error=True))
            except ResponseError as exc:
                replies.append(exc)
        return replies

    async def call(self, *args: Arg, timeout: float | None = None, resend: bool = True,
                   blocking: bool = False) -> Any:
        """One command; an error reply raises ``ResponseError``."""
        reply = (await self.pipeline((args,), timeout=timeout, resend=resend, blocking=blocking))[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    async def command(self, *args: Arg, timeout: float | None = None, resend: bool = True,
                      blocking: bool = False) -> Any:
        """:meth:`call` with redis-py errors translated to taskq's."""
        try:
            return await self.call(*args, timeout=timeout, resend=resend, blocking=blocking)
        except Exception as exc:
            raise _translate(exc, self.url) from None

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
                    raise _translate(ping, self.url) from None
                raise _translate(exc, self.url) from None
            except Exception as exc:
                raise _translate(exc, self.url) from None
        return self.sync.command(name)  # decided now: no I/O

    async def run(self, name: str, *args: Arg, resend: bool = True, timeout: float | None = None) -> Any:
        """Run transition ``name`` (see ``Backend.run``), reloading lost code."""
        cmd = await self.script(name)
        try:
            return await self.call(*cmd, *args, resend=resend, timeout=timeout)
        except Exception as exc:
            if not Backend.code_missing(exc):
                raise _translate(exc, self.url) from None
        try:
            if self.sync.functions and await self.load_code():
                return await self.call(*self.sync.command(name), *args, timeout=timeout)
            script = self.sync.scripts[name]
            return await self.call("EVAL", script.source, 1, self.sync.prefix, *args, timeout=timeout)
        except Exception as exc:
            raise _translate(exc, self.url) from None

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
            raise _translate(exc, self.url) from None
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


def _translate(exc: BaseException, url: str) -> BaseException:
    """taskq's error for a redis-py one (itself when it has none)."""
    mapped = translated(exc, url)
    return exc if mapped is None else mapped
