"""Clients for one server, a Sentinel group or a Cluster.

Every part of storage talks to the server through a ``redis.Redis`` and
through :class:`~taskq.storage.wire.Wire` connections made like its pool's.
For a Sentinel group and a Cluster the pool's connection class finds the
right server itself when it connects, so both paths follow a failover:

- Sentinel: redis-py's ``SentinelManagedConnection`` asks the sentinels for
  the master; a master turned replica (``READONLY``, or a blocking call
  unblocked by the role change) raises :class:`Redirected`, and the next
  connection asks again.
- Cluster: :class:`SlotConnection` connects to the master of one hash slot
  (the namespace's, from the key it is made for), found in the slot map of
  redis-py's ``RedisCluster``. ``MOVED`` moves it to the node named;
  ``READONLY``, ``CLUSTERDOWN``, ``TRYAGAIN``, ``ASK`` and a refused
  connection make it read the slot map again. Each raises
  :class:`Redirected`: the command did not run, so it is sent again.
  Connections made before a move reconnect before their next command.
"""

from __future__ import annotations

import threading
from typing import Any

import redis
from redis.backoff import ExponentialBackoff
from redis.cluster import ClusterNode, RedisCluster
from redis.connection import Connection, SSLConnection
from redis.crc import key_slot
from redis.exceptions import (
    AskError,
    ClusterDownError,
    MovedError,
    ReadOnlyError,
    RedisError,
    TryAgainError,
)
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection

from .urls import ServerAddress, parse_server_url
from .wire import MAX_REDIRECTS, Redirected

# redis-py's classes are untyped: seen as Any, so subclasses type-check.
RedisConnection: Any = Connection
Node: Any = ClusterNode
ManagedConnection: Any = SentinelManagedConnection
ManagedSSLConnection: Any = SentinelManagedSSLConnection
SentinelPool: Any = redis.sentinel.SentinelConnectionPool


def redirect_retry() -> Retry:
    """redis-py's retry for calls through the client: only a redirected
    command (which did not run) is sent again; anything else may have run."""
    return Retry(ExponentialBackoff(cap=0.5, base=0.02), MAX_REDIRECTS, supported_errors=(Redirected,))


class SlotRoute:
    """The master serving one hash slot of a cluster, as last seen.

    ``generation`` moves on whenever the answer may have changed, so that
    connections made before it reconnect."""

    def __init__(self, address: ServerAddress, node_kwargs: dict[str, Any], key: str) -> None:
        self.hosts = address.hosts
        self.node_kwargs = node_kwargs
        self.slot = key_slot(key.encode())
        self.generation = 0
        self._cluster: RedisCluster | None = None
        self._address: tuple[str, int] | None = None
        self._lock = threading.Lock()

    @property
    def cluster(self) -> RedisCluster:
        """redis-py's cluster client (its slot map); made on first use."""
        with self._lock:
            if self._cluster is None:
                try:
                    self._cluster = RedisCluster(
                        startup_nodes=[Node(h, p) for h, p in self.hosts], require_full_coverage=False,
                        **self.node_kwargs)
                except RedisError as exc:
                    raise RedisConnectionError(f"no cluster node answered: {exc}") from None
            return self._cluster

    def address(self) -> tuple[str, int]:
        """(host, port) of the slot's master."""
        found = self._address
        if found is None:
            try:
                node = self.cluster.nodes_manager.get_node_from_slot(self.slot)
            except RedisError as exc:
                raise RedisConnectionError(f"no cluster node serves slot {self.slot}: {exc}") from None
            found = self._address = (node.host, int(node.port))
        return found

    def moved(self, host: str, port: int) -> None:
        """A node answered ``MOVED``: the slot is served at host:port."""
        self._address = (host, port)
        self.generation += 1

    def lost(self) -> None:
        """The slot's master did not answer as one: read the slot map again."""
        self._address = None
        self.generation += 1
        cluster = self._cluster
        if cluster is not None:
            try:
                cluster.nodes_manager.initialize()
            except RedisError:
                pass  # no node answers now: the next connect asks again

    def replicas(self) -> int:
        """How many replicas the slot map lists for the slot (reachable or not)."""
        try:
            self.address()
            return max(len(self.cluster.nodes_manager.slots_cache.get(self.slot, [])) - 1, 0)
        except RedisError:
            return 0


class SlotConnection(RedisConnection):  # type: ignore[misc]
    """A connection to the master of its route's slot (see the module docstring)."""

    def __init__(self, *, route: SlotRoute, **kwargs: Any) -> None:
        self.route = route
        self._generation = -1
        super().__init__(**kwargs)

    def _connect(self) -> Any:
        self.host, self.port = self.route.address()
        self._generation = self.route.generation
        try:
            return super()._connect()
        except OSError:
            self.route.lost()
            raise

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if self._sock is not None and self._generation != self.route.generation:
            self.disconnect()  # made before the slot moved: connect again
        super().send_packed_command(command, check_health)

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except MovedError as exc:  # before AskError: a subclass of it
            self.disconnect()
            if exc.slot_id == self.route.slot:
                self.route.moved(exc.host or str(self.host), int(exc.port))
            else:
                self.route.lost()
            raise Redirected(f"slot {exc.slot_id} moved to {exc.host}:{exc.port}") from None
        except (AskError, ReadOnlyError, ClusterDownError, TryAgainError) as exc:
            self.disconnect()
            self.route.lost()
            raise Redirected(f"the cluster is changing: {exc}", pause=0.05) from None


class SlotSSLConnection(SlotConnection, SSLConnection):
    """:class:`SlotConnection` over TLS."""


class SentinelConnection(ManagedConnection):  # type: ignore[misc]
    """redis-py's Sentinel-managed connection, raising :class:`Redirected`
    when the master it was on is now a replica."""

    def _connect(self) -> Any:
        # The Wire connects through connect_check_health, not connect(): ask
        # the sentinels here, so every path reaches the current master.
        if self.connection_pool.is_master:
            self.host, self.port = self.connection_pool.get_master_address()
        return super()._connect()

    def read_response(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().read_response(*args, **kwargs)
        except RedisConnectionError as exc:
            if "now a slave" in str(exc):
                raise Redirected("the master became a replica") from None
            raise


class SentinelSSLConnection(SentinelConnection, ManagedSSLConnection):  # type: ignore[misc]
    """:class:`SentinelConnection` over TLS."""


class Topology:
    """How the client finds its server: ``kind`` and, for a cluster, the slot's route."""

    def __init__(self, address: ServerAddress, route: SlotRoute | None = None,
                 sentinel: Sentinel | None = None) -> None:
        self.address = address
        self.route = route
        self.sentinel = sentinel

    def replicas(self) -> int:
        """How many replicas the master has (known to Sentinel or the slot
        map, connected or not; for one server, connected now)."""
        if self.route is not None:
            return self.route.replicas()
        if self.sentinel is not None:
            try:
                return len(self.sentinel.discover_slaves(self.address.service))
            except RedisError:
                return 0
        return -1  # ask the server itself


def connection_settings(url: str, **options: Any) -> tuple[type[Any], dict[str, Any]]:
    """(connection class, keyword arguments) redis-py makes of a plain URL."""
    pool = redis.ConnectionPool.from_url(url, **options)
    return pool.connection_class, dict(pool.connection_kwargs)


def make_client(url: str, key: str, **options: Any) -> tuple[Any, Topology]:
    """A ``redis.Redis`` for ``url`` (any form of :mod:`.urls`) and its
    :class:`Topology`; on a cluster its connections go to the master of
    ``key``'s slot. Nothing is connected yet."""
    address = parse_server_url(url)
    if address.kind == "server":
        return redis.Redis.from_url(url, **options), Topology(address)
    cls, kwargs = connection_settings(address.url, **options)
    tls = issubclass(cls, SSLConnection)
    kwargs.pop("connection_class", None)
    # Never used: every connection asks where to go. Port 0 cannot be
    # reached, so a connection that did not ask fails instead of finding
    # some other server at the URL's first host.
    kwargs.update(host="127.0.0.1", port=0)
    kwargs["retry"] = redirect_retry()
    if address.kind == "cluster":
        kwargs.pop("db", None)
        node_kwargs = {k: v for k, v in kwargs.items() if k not in ("socket_timeout", "retry")}
        route = SlotRoute(address, {**node_kwargs, "ssl": tls} if tls else node_kwargs, key)
        pool = redis.ConnectionPool(connection_class=SlotSSLConnection if tls else SlotConnection,
                                    route=route, **kwargs)
        return redis.Redis(connection_pool=pool), Topology(address, route=route)
    sentinel_kwargs: dict[str, Any] = {"socket_connect_timeout": 2.0, "socket_timeout": 2.0, "protocol": 2}
    sentinel_kwargs.update(address.sentinel_options)
    if tls:
        sentinel_kwargs["ssl"] = True
        sentinel_kwargs.update({k: v for k, v in kwargs.items() if k.startswith("ssl_")})
    sentinel = Sentinel(list(address.hosts), sentinel_kwargs=sentinel_kwargs)
    pool = SentinelPool(
        address.service, sentinel, connection_class=SentinelSSLConnection if tls else SentinelConnection,
        **kwargs)
    return redis.Redis(connection_pool=pool), Topology(address, sentinel=sentinel)
