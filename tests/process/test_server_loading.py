"""A restarted server answers ``LOADING`` until its data set is in memory:
a worker or scheduler started meanwhile waits for it, then serves."""

from __future__ import annotations

import contextlib
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

import taskq.embedded
from taskq.embedded import START_TIMEOUT, EphemeralServer
from tests.apps.basic import build
from tests.conftest import ROOT, wait_for

APP = "tests.apps.basic:app"
FILL_KEYS = 100_000  # at the delay below: minutes of loading, unless the test ends it sooner (it does)


def loading(client: redis.Redis) -> bool:
    """Whether the server answers LOADING."""
    try:
        client.ping()
    except redis.BusyLoadingError:
        return True
    except redis.ConnectionError:
        return False
    return False


@pytest.fixture
def loading_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[EphemeralServer, redis.Redis]]:
    """A server restarted on a data set it loads slowly (a delay per key,
    answering clients meanwhile), with a client to it. ``CONFIG SET
    key-load-delay 0`` (allowed while loading) lets it finish: the loading
    lasts until the test says so, however slowly the machine runs."""
    with EphemeralServer() as server:
        admin = redis.Redis(port=server.port, socket_timeout=5, retry=Retry(NoBackoff(), 0))
        pipe = admin.pipeline(transaction=False)
        for i in range(FILL_KEYS // 1000):
            pipe.mset({f"fill:{i}:{j}": "x" for j in range(1000)})
        pipe.execute()
        admin.save()
        server.extra_args += ["--key-load-delay", "2000", "--loading-process-events-interval-bytes", "1024"]
        server.kill()
        # start() waits for the end of the loading (and would kill a server
        # still loading after START_TIMEOUT): here it ends when the test says
        monkeypatch.setattr(taskq.embedded, "START_TIMEOUT", 600.0)
        failed: list[BaseException] = []

        def start() -> None:
            try:
                server.start()  # returns once loading ended
            except BaseException as exc:
                failed.append(exc)

        starting = threading.Thread(target=start, daemon=True)
        starting.start()
        try:
            wait_for(lambda: loading(admin), 30, what="the server to answer LOADING")
            yield server, admin
        finally:
            with contextlib.suppress(redis.RedisError):
                admin.config_set("key-load-delay", 0)
            starting.join(START_TIMEOUT + 5)
            admin.close()
        assert not failed, failed


def test_a_worker_and_a_scheduler_started_while_the_server_loads_wait_then_serve(loading_server, namespace,
                                                                                 start_worker, worker_env,
                                                                                 tmp_path):
    server, admin = loading_server
    env = {**worker_env, "TASKQ_REDIS_URL": server.url}
    assert loading(admin)
    w = start_worker(APP, "--no-scheduler", env=env, ready=False)
    stopped = start_worker(APP, "--no-scheduler", env=env, ready=False)  # gets SIGTERM while waiting
    scheduler_log = tmp_path / "scheduler.log"
    with open(scheduler_log, "wb") as fh:
        sched = subprocess.Popen([sys.executable, "-m", "taskq_cli.main", "scheduler", APP], cwd=ROOT, env=env,
                                 stdout=fh, stderr=subprocess.STDOUT)
    client = build(server.url, namespace)
    try:
        waiting = "waiting to start: server at"
        wait_for(lambda: all(waiting in p.log() or p.proc.poll() is not None for p in (w, stopped))
                 and ("is loading the dataset" in scheduler_log.read_text() or sched.poll() is not None),
                 60, what="the workers and the scheduler to meet LOADING")
        assert w.proc.poll() is None, w.log()
        assert sched.poll() is None, scheduler_log.read_text()
        assert loading(admin)  # they met LOADING, and it goes on
        stopped.signal(signal.SIGTERM)
        assert stopped.wait(30) == 0 and "worker stopped" in stopped.log(), stopped.log()

        admin.config_set("key-load-delay", 0)
        wait_for(lambda: server.pid is not None, START_TIMEOUT + 5, what="loading to end")
        # the worker serves no scheduler: the standalone one promotes the delayed job
        job = client.tasks["add"].apply_async((2, 3), delay=0.2)
        assert job.result(timeout=30) == 5
        assert w.proc.poll() is None and sched.poll() is None
        assert w.log().count(waiting) == 1, w.log()  # logged once, not per retry
    finally:
        if sched.poll() is None:
            sched.send_signal(signal.SIGTERM)
        sched.wait(15)
        with contextlib.suppress(Exception):
            client.backend.delete_namespace()
        client.close()
