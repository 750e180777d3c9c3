"""What every figure shares: sizes per mode, the run context (server URL,
clients, namespaces) and the subprocesses (taskq workers, raw loops)."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Sizes:
    runs: int
    single: int  # jobs per single-enqueue run
    bulk: int  # jobs per bulk-enqueue run
    drain: int  # jobs drained per run
    roundtrip: int  # sequential round trips per run
    late: int  # delayed jobs per lateness run
    late_window: float  # seconds their due times are spread over
    backlog: int  # due jobs promoted per run
    memory: int  # queued jobs measured per run
    idle: float  # seconds a worker idles before its RSS is read
    dash_queued: int = 100_000  # queued jobs behind the dashboard's overview
    dash_failed: int = 10_000  # failed jobs behind it
    wf_chord: int = 10_000  # members of the chord enqueued (workflows)
    wf_latency: int = 50  # small chords timed for callback latency
    wf_chain: int = 1000  # steps of the chain
    cluster: int = 30_000  # jobs drained per cluster run (a third per namespace)


MODES = {
    "smoke": Sizes(runs=3, single=300, bulk=3000, drain=300, roundtrip=50, late=100, late_window=0.3,
                   backlog=3000, memory=3000, idle=0.2, dash_queued=3000, dash_failed=300,
                   wf_chord=1000, wf_latency=10, wf_chain=50, cluster=600),
    "quick": Sizes(runs=3, single=5000, bulk=50_000, drain=5000, roundtrip=300, late=2000, late_window=3.0,
                   backlog=30_000, memory=30_000, idle=1.0),
    "full": Sizes(runs=5, single=20_000, bulk=200_000, drain=20_000, roundtrip=1000, late=10_000,
                  late_window=10.0, backlog=100_000, memory=100_000, idle=2.0, cluster=90_000),
}


def client(url: str) -> redis.Redis:
    """A client with the settings of taskq's backend (``storage/backend.py``)."""
    return redis.Redis.from_url(url, socket_connect_timeout=2.0, socket_timeout=30.0, protocol=2,
                                health_check_interval=0)


def wait_until(cond: Callable[[], Any], timeout: float, what: str, interval: float = 0.005) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout:g}s waiting for {what}")
        time.sleep(interval)


def rss_kb(pid: int) -> int:
    """VmRSS of a process in kB (0 if unknown)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def child_pids(pid: int) -> list[int]:
    try:
        return [int(x) for x in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []


class Proc:
    """A subprocess of this run, logging to a file; stopped by SIGTERM."""

    def __init__(self, ctx: Context, cmd: list[str], env: dict[str, str] | None = None,
                 stdout: bool = False) -> None:
        self.log_path = ctx.workdir / f"proc-{len(ctx.procs)}.log"
        full_env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
                    **(env or {})}
        with open(self.log_path, "wb") as log:
            self.popen = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdin=subprocess.DEVNULL,
                                          stdout=subprocess.PIPE if stdout else log, stderr=log)
        ctx.procs.append(self)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-3000:]

    def check(self) -> None:
        if self.popen.poll() not in (None, 0):
            raise RuntimeError(f"{self.popen.args!r} exited with {self.popen.returncode}:\n{self.log()}")

    def output(self, timeout: float) -> str:
        """Wait for exit and return stdout (only for ``stdout=True``)."""
        out, _ = self.popen.communicate(timeout=timeout)
        self.check()
        return out.decode() if out else ""

    def stop(self, wait: bool = True) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
        if wait:
            self.join()

    def join(self, timeout: float = 30.0) -> None:
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            for pid in child_pids(self.pid):  # a worker's children, then the process itself
                os.kill(pid, signal.SIGKILL)
            self.popen.kill()
            self.popen.wait()
        if self.popen.stdout:
            self.popen.stdout.close()


@dataclass
class Context:
    url: str
    sizes: Sizes
    workdir: Path
    procs: list[Proc] = field(default_factory=list)
    server_bin: str | None = None  # the run's server binary and settings, for servers a figure starts
    appendonly: bool = False
    server_args: tuple[str, ...] = ()
    _client: redis.Redis | None = None

    @property
    def runs(self) -> int:
        return self.sizes.runs

    @property
    def redis(self) -> redis.Redis:
        """The runner's own client (raw floors and bookkeeping)."""
        if self._client is None:
            self._client = client(self.url)
        return self._client

    @staticmethod
    def namespace() -> str:
        return "b" + secrets.token_hex(4)

    def flush(self) -> None:
        """Empty the server between runs (it is ours alone)."""
        self.redis.execute_command("FLUSHALL", "SYNC")  # plain FLUSHALL may free lazily

    def worker(self, namespace: str, concurrency: int, url: str | None = None, queues: str = "default",
               key_layout: str = "namespace") -> Proc:
        """Start ``taskq worker benchmarks.tasks:app -c N -Q QUEUES`` on ``namespace`` (of the run's
        server, or of the one at ``url``)."""
        cmd = [sys.executable, "-m", "taskq_cli.main", "worker", "benchmarks.tasks:app", "-c", str(concurrency),
               "-Q", queues, "--loglevel", "WARNING"]
        return Proc(self, cmd, {"TASKQ_REDIS_URL": url or self.url, "TASKQ_NAMESPACE": namespace,
                                "TASKQ_KEY_LAYOUT": key_layout})

    def worker_proc(self, namespace: str) -> Proc:
        """Start ``taskq worker benchmarks.dashboard_tasks:app -c 2 -Q work`` on ``namespace``."""
        cmd = [sys.executable, "-m", "taskq_cli.main", "worker", "benchmarks.dashboard_tasks:app", "-c", "2",
               "-Q", "work", "--loglevel", "ERROR"]
        return Proc(self, cmd, {"TASKQ_REDIS_URL": self.url, "TASKQ_NAMESPACE": namespace})

    def wait_registered(self, proc: Proc, namespace: str, count: int, timeout: float = 60.0) -> None:
        key = "{" + namespace + "}:workers"

        def ready() -> bool:
            proc.check()
            if proc.popen.poll() is not None:
                raise RuntimeError(f"worker exited early:\n{proc.log()}")
            return int(self.redis.zcard(key)) >= count

        wait_until(ready, timeout, "worker registration", interval=0.01)

    def raw(self, mode: str, *args: Any, stdout: bool = True) -> Proc:
        """Start ``python -m benchmarks.raw MODE URL ARGS...``."""
        cmd = [sys.executable, "-m", "benchmarks.raw", mode, self.url, *map(str, args)]
        return Proc(self, cmd, stdout=stdout)

    def raw_results(self, procs: list[Proc], timeout: float) -> list[dict[str, Any]]:
        return [json.loads(p.output(timeout).strip().splitlines()[-1]) for p in procs]

    def reap(self) -> None:
        """Stop every process still running and wait for them all."""
        for p in self.procs:
            p.stop(wait=False)
        for p in self.procs:
            p.join()
        self.procs.clear()
