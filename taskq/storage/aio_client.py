"""The asyncio adapter's connections: one pool per event loop (a
connection belongs to the loop that opened it), commands sent on a pooled
connection as pre-packed bytes with the raw replies read back, as
``wire.py`` does for the sync hot path, and sent again to the master found
anew when the one asked is not (or no longer) the master.
"""

from __future__ import annotations

import asyncio
import weakref
from collections.abc import Sequence
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .aio_route import AsyncRoute, redirected
from .backend import Backend
from .connection import Arg, translated
from .wire import MAX_REDIRECTS, pack

LOST = (RedisConnectionError, OSError)
# Connections per loop for commands the server answers at once: many
# concurrent tasks share them (waiting their turn) rather than each opening
# one. A result wait holds its connection for a whole slice: those come
# from a second pool, one connection per waiting task.
SHORT_CONNECTIONS = 32
WAIT_CONNECTIONS = 10_000


class AsyncClient:
    """Pooled asyncio connections to the server (or the master) of a sync
    :class:`Backend`, per event loop."""

    def __init__(self, backend: Backend) -> None:
        self.url = backend.url
        self.route = AsyncRoute(backend)  # a Sentinel group's or cluster slot's master, found in a thread
        self._pools: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, tuple[Any, Any, str]] = (
            weakref.WeakKeyDictionary())

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
            raise translate(exc, self.url) from None


def translate(exc: BaseException, url: str) -> BaseException:
    """taskq's error for a redis-py one (itself when it has none)."""
    mapped = translated(exc, url)
    return exc if mapped is None else mapped
