"""What a worker says when it starts, and that it enqueues no periodic tick
once it has begun shutting down."""

from __future__ import annotations

import logging
import signal

from taskq import embedded as srv
from tests.apps import control
from tests.conftest import wait_for
from tests.process.test_periodic import cron_jobs

APP = "tests.apps.control:app"


def test_start_banner_names_app_namespace_server_queues_and_tasks_once(capp, start_worker):
    w = start_worker(APP, "-Q", "default,periodic")
    wait_for(lambda: "taskq worker:" in w.log(), 20, what="the banner")
    (banner,) = [ln for ln in w.log().splitlines() if "taskq worker:" in ln]
    ns = capp.settings.namespace
    for text in (f"app {capp.name!r}", f"namespace {ns!r}", "queues default,periodic", "concurrency 1 x 1",
                 f"{len(control.app.tasks)} task(s): ", "echo, fail", "tick"):
        assert text in banner, banner


def test_no_periodic_tick_is_enqueued_once_shutdown_began(capp, start_worker):
    w = start_worker(APP)  # serves "default"; the ticks (every second) pile up in "periodic"
    wait_for(lambda: cron_jobs(capp), 20, what="a first tick")
    job = capp.tasks["sleepy"].delay(3.0)  # holds the shutdown open for about 3 s
    wait_for(lambda: job.state.value == "active", 20, what="the job to start")
    w.signal(signal.SIGTERM)
    wait_for(lambda: "shutting down" in w.log(), 20, what="shutdown to begin")
    at_shutdown = cron_jobs(capp)
    assert w.wait(30) == 0
    assert job.result(timeout=5) == "slept"  # the shutdown lasted seconds: ticks fell due meanwhile
    assert cron_jobs(capp) == at_shutdown


def test_an_embedded_server_is_announced_once_per_start(tmp_path, caplog):
    home = tmp_path / "home"
    caplog.set_level(logging.INFO, logger="taskq")
    try:
        srv.ensure_embedded_server(home)
        srv.ensure_embedded_server(home)  # the same process again: reused quietly
        said = [r.getMessage() for r in caplog.records if r.levelno >= logging.INFO]
        assert len([m for m in said if m.startswith("started ")]) == 1, said
        assert not [m for m in said if "reusing" in m], said
    finally:
        srv.stop_embedded_server(home)
