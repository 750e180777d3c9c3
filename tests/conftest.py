"""Shared fixtures: one real server per test session, a fresh namespace per
test, and helpers to run real ``taskq worker`` processes.

The server: ``TASKQ_TEST_REDIS_URL`` if set (never flushed: tests use their
own namespaces), else a throwaway server on a free loopback port.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import hypothesis  # noqa: F401 - imported at collection, not by its plugin at the session's end
import pytest

from taskq import TaskQ
from taskq.ephemeral import EphemeralServer
from tests.apps.control import build as build_control_app

ROOT = Path(__file__).resolve().parent.parent


def wait_for(cond: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll ``cond`` until it returns a truthy value or the deadline passes."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(interval)


@pytest.fixture(scope="session", autouse=True)
def interruptible_subprocesses() -> None:
    """Tests stop ``taskq metrics`` and ``taskq status --watch`` with SIGINT, as
    Ctrl-C does. A test run started in the background has SIGINT ignored (a
    shell does that for background jobs), and every process it starts would
    inherit that and never see the signal: take it back to Python's default."""
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.fixture(scope="session")
def redis_server() -> Iterator[EphemeralServer | None]:
    if os.environ.get("TASKQ_TEST_REDIS_URL"):
        yield None
        return
    server = EphemeralServer(appendonly=True).start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def redis_url(redis_server: EphemeralServer | None) -> str:
    return os.environ.get("TASKQ_TEST_REDIS_URL") or redis_server.url  # type: ignore[union-attr]


@pytest.fixture
def own_server() -> Iterator[EphemeralServer]:
    """A server of the test's own, to kill or restart."""
    with EphemeralServer() as server:
        yield server


@pytest.fixture
def namespace() -> str:
    return "t" + secrets.token_hex(4)


@pytest.fixture
def make_app(redis_url: str, namespace: str) -> Iterator[Callable[..., TaskQ]]:
    """Build apps on the test server, in this test's namespace (unless given)."""
    apps: list[TaskQ] = []

    def factory(**kwargs: Any) -> TaskQ:
        kwargs.setdefault("namespace", namespace)
        app = TaskQ(kwargs.pop("name", "test"), redis_url, **kwargs)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        try:
            app.backend.delete_namespace()
        except Exception:
            pass
        app.close()


@pytest.fixture
def app(make_app: Callable[..., TaskQ]) -> TaskQ:
    return make_app()


@pytest.fixture
def capp(redis_url: str, namespace: str) -> Iterator[TaskQ]:
    """An app with the tasks of ``tests/apps/control.py``."""
    app = build_control_app(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


class WorkerProcess:
    """A real ``taskq worker`` subprocess, logging to a file."""

    def __init__(self, proc: subprocess.Popen[bytes], log_path: Path) -> None:
        self.proc = proc
        self.log_path = log_path

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def signal(self, sig: int) -> None:
        self.proc.send_signal(sig)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout=timeout)

    def child_pids(self) -> list[int]:
        try:
            out = subprocess.run(["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True).stdout
        except FileNotFoundError:
            out = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        return [int(x) for x in out.split()]

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill_all()

    def kill_all(self) -> None:
        """SIGKILL the supervisor and its children (a lost machine)."""
        children = self.child_pids() if self.proc.poll() is None else []
        for pid in [self.proc.pid, *children]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        self.proc.wait(timeout=10)


@pytest.fixture
def worker_env(redis_url: str, namespace: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update({"TASKQ_REDIS_URL": redis_url, "TASKQ_NAMESPACE": namespace, "PYTHONPATH": str(ROOT)})
    return env


@pytest.fixture
def start_worker(worker_env: dict[str, str], tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start ``taskq worker APP ARGS...``; every process is stopped at teardown."""
    started: list[WorkerProcess] = []

    def start(app_path: str = "tests.apps.basic:app", *args: str, env: dict[str, str] | None = None,
              ready: bool = True) -> WorkerProcess:
        log_path = tmp_path / f"worker-{len(started)}.log"
        cmd = [sys.executable, "-m", "taskq_cli.main", "worker", app_path, *args]
        if not any(a.startswith(("-c", "--concurrency")) for a in args):
            cmd += ["-c", "1"]
        full_env = {**worker_env, **(env or {})}
        with open(log_path, "wb") as fh:
            proc = subprocess.Popen(cmd, cwd=ROOT, env=full_env, stdout=fh, stderr=subprocess.STDOUT)
        wp = WorkerProcess(proc, log_path)
        started.append(wp)
        if ready:
            app = TaskQ("probe", full_env["TASKQ_REDIS_URL"], namespace=full_env["TASKQ_NAMESPACE"],
                        key_layout=full_env.get("TASKQ_KEY_LAYOUT") or None)
            try:
                wait_for(lambda: app.workers() or proc.poll() is not None, 20, what="worker registration")
            finally:
                app.close()
            if proc.poll() is not None:
                raise AssertionError(f"worker exited early ({proc.returncode}):\n{wp.log()}")
        return wp

    yield start
    for wp in started:
        wp.stop()


# ---------------------------------------------------------------- helpers


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not _ipv6_loopback(), reason="no IPv6 loopback on this machine: ::1 cannot be bound")


def strict_loads(text: str) -> Any:
    """``json.loads`` that refuses ``NaN`` and ``Infinity``, which are not JSON."""
    def refuse(name: str) -> None:
        raise ValueError(f"not JSON: {name}")

    return json.loads(text, parse_constant=refuse)


def lines(path: Path) -> list[str]:
    """The lines of a trace file a task appends to (none if it is not there yet)."""
    return path.read_text().splitlines() if path.exists() else []


def worker_ids_of(client: TaskQ, wp: WorkerProcess) -> list[str]:
    """Registered worker ids of the children of one supervisor (ids embed its pid)."""
    return [w for w, _ in client.backend.workers() if f":{wp.pid}:" in w]


def child_pid_running(client: TaskQ, job_id: str) -> int:
    """Pid of the process holding the job's lease (from the worker's hash)."""
    wid = client.backend.job_hash(job_id)["w"].decode()
    return int(client.backend.hgetall(client.backend.keys.worker(wid))["pid"])


def drain(app: TaskQ, jobs: list[Any], worker_id: str = "w-drain") -> None:
    """Run jobs with an in-process consumer until they all finished."""
    from taskq.worker.child import Consumer
    from taskq.worker.config import WorkerConfig

    c = Consumer(app, WorkerConfig(concurrency=1, block_timeout=0.05, prefetch=1), worker_id)
    app.backend.register_tasks({n: app.options_for(n).max_attempts for n in app.tasks})
    c.heartbeat.beat()
    for _ in range(200):
        if all(j.state.finished for j in jobs):
            break
        c.step()
    c.stopping.set()
    c.shutdown()
