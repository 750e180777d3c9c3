"""Where the asyncio adapter's connections go on a Sentinel group or a Cluster.

redis-py's asyncio pools take plain URLs only, so the adapter asks the sync
backend's topology for the master (the sentinels, or the slot map of its
key's slot) in a worker thread, connects a plain pool to it, and asks again
when that master stops being the one: a ``MOVED``, ``READONLY``,
``CLUSTERDOWN``, ``TRYAGAIN`` or ``ASK`` reply (the command did not run: it
is sent again, to the new master) or a connection that fails (the caller's
retry rules apply, as for one server).
"""

from __future__ import annotations

import asyncio
import urllib.parse
from typing import TYPE_CHECKING

from redis.exceptions import (
    AskError,
    BusyLoadingError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisError,
    ResponseError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError

from .urls import parse_server_url

if TYPE_CHECKING:
    from .backend import Backend

REDIRECTS = ("MOVED", "READONLY", "CLUSTERDOWN", "TRYAGAIN", "ASK", "LOADING")
REDIRECT_ERRORS = (AskError, ReadOnlyError, ClusterDownError, TryAgainError, BusyLoadingError)  # MovedError: an AskError


def redirected(reply: object) -> bool:
    """The reply of a command the server did not run because it is not the master for it (now)."""
    return isinstance(reply, REDIRECT_ERRORS) or (
        isinstance(reply, ResponseError) and str(reply).split(" ", 1)[0] in REDIRECTS)


def with_host(url: str, host: str, port: int) -> str:
    """``url`` (a plain one) pointing at host:port, credentials and options kept."""
    parts = urllib.parse.urlsplit(url)
    userinfo = parts.netloc.rpartition("@")[0]
    where = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{userinfo}@{where}" if userinfo else where))


class AsyncRoute:
    """The plain URL of the master serving a backend's key, as last found."""

    def __init__(self, sync: Backend) -> None:
        self.sync = sync
        self.address = parse_server_url(sync.url)
        self.direct = self.address.kind == "server"
        self._target: tuple[str, int] | None = None
        self._stale = False  # the slot map must be read again before the next answer

    async def url(self) -> str:
        if self.direct:
            return self.sync.url
        target = self._target
        if target is None:
            target = self._target = await asyncio.to_thread(self._find)
        return with_host(self.address.url, *target)

    def _find(self) -> tuple[str, int]:
        topology = self.sync.topology
        try:
            if topology.route is not None:
                if self._stale:
                    self._stale = False
                    topology.route.lost()
                return topology.route.address()
            assert topology.sentinel is not None
            host, port = topology.sentinel.discover_master(self.address.service)
            return str(host), int(port)
        except RedisError as exc:
            raise RedisConnectionError(f"no master found: {exc}") from None

    def lost(self, reply: object = None) -> None:
        """The master did not answer as one: find it again before the next command."""
        self._target = None
        if isinstance(reply, MovedError):  # the slot's new master, named
            self._target = (str(reply.host), int(reply.port))
            if self.sync.topology.route is not None:
                self.sync.topology.route.moved(*self._target)
            return
        self._stale = True
