"""Commands on redis-py connections without ``Redis.execute_command``.

redis-py's command path (pool checkout, retry wrapper, metrics hooks,
response callbacks) costs about 35 µs of Python per command, as much as a
loopback round trip. The hot path (enqueue, settle/claim, result waits)
sends pre-packed commands on connections of its own and reads the raw
replies: same protocol, same connection class (TLS, AUTH, RESP2 settings
come from the client's pool), a fraction of the cost.

Connections are kept in a stack; ``list.pop``/``append`` are atomic, so
threads never share a connection in use. After a fork the stack is dropped
(the child never touches the parent's sockets).
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

try:  # packs a command in C; redis-py wraps the same call in per-argument Python
    from hiredis import pack_command as _pack
except ImportError:  # pragma: no cover - hiredis is an optional extra
    _pack = None

LOST = (RedisConnectionError, OSError)  # a read timeout is handled before these
MAX_REDIRECTS = 8  # sends of one call redirected by a Cluster or Sentinel change


class Redirected(RedisConnectionError):
    """The server did not run the command: it is not (or no longer) the
    master for it (a cluster's ``MOVED``, a master turned replica...). The
    connection now points at the right one; the command is sent again
    (after ``pause`` s)."""

    def __init__(self, message: str, pause: float = 0.0) -> None:
        super().__init__(message)
        self.pause = pause


def packed(conn: Any, commands: Sequence[Sequence[Any]]) -> list[bytes]:
    """``commands`` in the wire protocol, ready for ``send_packed_command``."""
    if _pack is not None:
        return [b"".join([_pack(tuple(c)) for c in commands])]
    out: list[bytes] = conn.pack_commands(commands)
    return out


def _buffered_reader(conn: Any) -> Any:
    """The hiredis reader behind a RESP2 connection, or None (pure-Python
    parser, or a redis-py without this attribute)."""
    if _pack is None or getattr(conn, "protocol", 2) not in (2, "2", None):
        return None
    return getattr(getattr(conn, "_parser", None), "_reader", None)


def pack(command: Sequence[Any]) -> bytes:
    """One command in the wire protocol."""
    if _pack is not None:
        return bytes(_pack(tuple(command)))
    out = [b"*%d\r\n" % len(command)]
    for arg in command:
        b = arg if isinstance(arg, bytes) else str(arg).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(b), b))
    return b"".join(out)


class Wire:
    """Send commands on idle connections made like the client's own."""

    def __init__(self, client: Any) -> None:
        pool = client.connection_pool
        self._cls = pool.connection_class
        self._kwargs = pool.connection_kwargs
        self._idle: list[Any] = []
        self._pid = os.getpid()

    def _take(self) -> tuple[Any, bool]:
        """(connection, reused): an idle one if any, else a new one."""
        if self._pid != os.getpid():
            self._idle, self._pid = [], os.getpid()
        try:
            return self._idle.pop(), True
        except IndexError:
            return self._cls(**self._kwargs), False

    def call(self, *args: Any, timeout: float | None = None, resend: bool = True) -> Any:
        """One command; an error reply raises ``ResponseError``."""
        reply = self.pipeline((args,), timeout=timeout, resend=resend)[0]
        if isinstance(reply, ResponseError):
            raise reply
        return reply

    def pipeline(self, commands: Sequence[Sequence[Any]], timeout: float | None = None,
                 resend: bool = True, data: Sequence[bytes] | None = None) -> list[Any]:
        """Send commands in one write and read every reply; an error reply is
        returned in its place as a ``ResponseError``.

        A connection that was idle may have been closed by a server restart:
        when it fails, the commands go once more on a new connection (as
        redis-py's own retry would); ``resend=False`` raises instead, for
        commands that must change before they are sent again. A failure on
        a new connection, or a read timeout, raises.
        ``timeout``: read timeout for this call (a blocking command's own
        timeout plus a margin); the connection's default otherwise.
        ``data``: the commands already packed (``commands`` then only counts
        the replies)."""
        redirects = 0
        while True:
            conn, reused = self._take()
            try:
                conn.send_packed_command(data if data is not None else packed(conn, commands), False)
                replies: list[Any] = []
                reader = _buffered_reader(conn) if len(commands) > 1 else None
                for _ in commands:
                    if replies and reader is not None:
                        # replies already received: taken from hiredis's buffer
                        # directly (redis-py costs a few µs per reply)
                        reply = reader.gets()
                        if reply is not False and not isinstance(reply, RedisConnectionError):
                            replies.append(reply)
                            continue
                        reader = None  # not yet received (or an error): redis-py reads on
                        if reply is not False:
                            raise reply
                    try:
                        if timeout is None:
                            replies.append(conn.read_response())
                        else:
                            replies.append(conn.read_response(timeout=timeout))
                    except ResponseError as exc:
                        replies.append(exc)
            except RedisTimeoutError:
                conn.disconnect()  # the server may have run it: never sent twice
                raise
            except Redirected as exc:  # not run: safe to send again, resend or not
                conn.disconnect()
                redirects += 1
                if redirects > MAX_REDIRECTS:
                    raise
                time.sleep(exc.pause * redirects)
                continue
            except LOST:
                conn.disconnect()
                if reused and resend:
                    continue
                raise
            except BaseException:
                conn.disconnect()  # unread replies would answer the next caller
                raise
            self._idle.append(conn)
            return replies

    def close(self) -> None:
        idle, self._idle = self._idle, []
        for conn in idle:
            conn.disconnect()
