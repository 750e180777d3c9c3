"""Observability with real processes: ``taskq status``, a worker's metrics
endpoint, and the workers registry across a SIGKILL."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import urllib.error
import urllib.request

import pytest

from taskq import JobState
from taskq.worker.scheduler import Reaper
from tests.apps.basic import build as build_basic
from tests.apps.obs import build
from tests.conftest import ROOT, needs_ipv6, strict_loads, wait_for
from tests.unit.test_metrics_format import parse_exposition, value_of

APP = "tests.apps.obs:app"


@pytest.fixture
def obs(redis_url, namespace):
    app = build(redis_url, namespace, heartbeat_timeout=1)
    yield app
    app.backend.delete_namespace()
    app.close()


def taskq(worker_env, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskq_cli.main", *args], cwd=ROOT, env=worker_env,
                          capture_output=True, text=True, timeout=60)


def free_port(family: socket.AddressFamily = socket.AF_INET) -> int:
    with socket.socket(family) as s:
        s.bind(("::1" if family == socket.AF_INET6 else "127.0.0.1", 0))
        return s.getsockname()[1]


def scrape(port: int, host: str = "127.0.0.1") -> str | None:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as resp:
            assert resp.headers["Content-Type"].startswith("text/plain; version=0.0.4")
            return resp.read().decode()
    except OSError:
        return None


def test_status_json_agrees_with_app_stats(obs, start_worker, worker_env) -> None:
    w = start_worker(APP)
    jobs = [obs.tasks["ok"].delay(i) for i in range(3)] + [obs.tasks["boom"].delay()]
    wait_for(lambda: all(j.state.finished for j in jobs), 20, what="jobs to finish")
    obs.tasks["ok"].apply_async((9,), queue="parked")

    out = taskq(worker_env, "status", APP, "--json")
    assert out.returncode == 0, out.stderr
    cli = json.loads(out.stdout)
    mine = obs.stats().as_dict()
    for key in ("namespace", "tasks", "ready", "scheduled", "active", "stalled", "failed", "worker_count",
                "failures_last_hour"):
        assert cli[key] == mine[key], key
    assert {q: (d["depth"], d["levels"], d["counters"]) for q, d in cli["queues"].items()} == {
        q: (d["depth"], d["levels"], d["counters"]) for q, d in mine["queues"].items()}
    assert cli["queues"]["parked"]["depth"] == 1 and cli["queues"]["parked"]["latency_s"] >= 0
    assert cli["tasks"]["ok"]["counters"]["succeeded"] == 3 and cli["failures_last_hour"] == 1
    (worker,) = cli["workers"]
    assert worker["ppid"] == w.pid and worker["pid"] in w.child_pids()
    assert [x["id"] for x in cli["workers"]] == [x.id for x in obs.workers()]

    text = taskq(worker_env, "status", APP)
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert lines[0].startswith(f"taskq  namespace {obs.settings.namespace}  ")
    assert lines[1] == "jobs: 1 ready  0 scheduled  0 active  0 stalled  1 failed"
    assert any(line.startswith(worker["id"] + "  ") for line in lines)
    assert any(line.split()[:5] == ["ok", "4", "3", "3", "0"] for line in lines)


def test_worker_serves_metrics_on_its_port(obs, start_worker) -> None:
    port = free_port()
    start_worker(APP, "--metrics-port", str(port))
    job = obs.tasks["ok"].delay(1)
    job2 = obs.tasks["boom"].delay()
    wait_for(lambda: job.state.finished and job2.state.finished, 20, what="jobs to finish")
    body = wait_for(lambda: scrape(port), 20, what="the metrics endpoint")
    fam = parse_exposition(body)
    assert value_of(fam, "taskq_jobs_total", task="ok", outcome="succeeded") == 1
    assert value_of(fam, "taskq_jobs_total", task="boom", outcome="failed") == 1
    assert value_of(fam, "taskq_queue_jobs_total", queue="default", outcome="enqueued") == 2
    assert value_of(fam, "taskq_job_duration_seconds_count", task="boom") == 1
    assert value_of(fam, "taskq_failed_jobs") == 1
    assert value_of(fam, "taskq_workers") == 1
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
    assert err.value.code == 404


def test_registry_shows_a_running_worker_until_a_reaper_removes_the_killed_one(obs, start_worker) -> None:
    w = start_worker(APP, env={"TASKQ_HEARTBEAT_TIMEOUT": "1"})
    job = obs.tasks["nap"].delay(30)
    wait_for(lambda: job.state == JobState.ACTIVE, 20, what="the job to start")
    (info,) = obs.workers()
    assert info.ppid == w.pid and info.pid in w.child_pids() and info.jobs == (job.id,)
    assert info.queues == ("default",) and info.heartbeat_age_s < 5

    w.kill_all()
    (dead,) = obs.workers()  # still registered: nobody has reaped it yet
    assert dead.id == info.id and dead.jobs == (job.id,)
    reaper = Reaper(obs)
    wait_for(lambda: reaper.tick(obs.backend.server_time_ms()) or not obs.workers(), 20, interval=0.1,
             what="the reaper to remove the killed worker")
    assert obs.workers() == []
    assert job.state in (JobState.QUEUED, JobState.FAILED)


def _popen(worker_env, tmp_path, *args: str) -> tuple[subprocess.Popen[bytes], object]:
    out = tmp_path / "out.txt"
    fh = open(out, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "taskq_cli.main", *args], cwd=ROOT, env=worker_env,
                            stdout=fh, stderr=subprocess.STDOUT)
    fh.close()
    return proc, out


def test_metrics_command_serves_until_interrupted(obs, worker_env, tmp_path) -> None:
    obs.tasks["ok"].delay(1)
    port = free_port()
    proc, out = _popen(worker_env, tmp_path, "metrics", APP, "--port", str(port))
    try:
        body = wait_for(lambda: scrape(port) or proc.poll() is not None, 20, what="the metrics endpoint")
        assert proc.poll() is None, out.read_text()
        fam = parse_exposition(body)
        assert value_of(fam, "taskq_queue_depth", queue="default") == 1
        assert value_of(fam, "taskq_workers") == 0
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, out.read_text()
    assert f"serving metrics on http://127.0.0.1:{port}/metrics" in out.read_text()


@needs_ipv6
def test_metrics_command_serves_on_an_ipv6_address(obs, worker_env, tmp_path) -> None:
    obs.tasks["ok"].delay(1)
    port = free_port(socket.AF_INET6)
    proc, out = _popen(worker_env, tmp_path, "metrics", APP, "--port", str(port), "--host", "::1")
    try:
        body = wait_for(lambda: scrape(port, "[::1]") or proc.poll() is not None, 20, what="the metrics endpoint")
        assert proc.poll() is None, out.read_text()
        assert value_of(parse_exposition(body), "taskq_queue_depth", queue="default") == 1
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, out.read_text()
    assert f"serving metrics on http://[::1]:{port}/metrics" in out.read_text()


@needs_ipv6
def test_metrics_command_names_a_taken_ipv6_address_in_brackets(obs, worker_env) -> None:
    with socket.socket(socket.AF_INET6) as taken:
        taken.bind(("::1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        out = taskq(worker_env, "metrics", APP, "--port", str(port), "--host", "::1")
    assert out.returncode == 1
    assert f"cannot listen on [::1]:{port}:" in out.stderr
    assert "Traceback" not in out.stderr


def test_status_watch_redraws_until_interrupted(obs, worker_env, tmp_path) -> None:
    obs.tasks["ok"].delay(1)
    header = f"taskq  namespace {obs.settings.namespace}  "
    proc, out = _popen(worker_env, tmp_path, "status", APP, "--watch")
    try:
        wait_for(lambda: out.read_text().count(header) >= 2 or proc.poll() is not None, 30, what="two frames")
        assert proc.poll() is None, out.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, out.read_text()
    # not a terminal: click leaves out the clear-screen codes, frames follow each other
    frames = [header + f for f in out.read_text().split(header)[1:]]
    assert "\x1b" not in frames[0]
    assert frames[0].splitlines()[4] == "QUEUE    READY  LATENCY  LEVELS  IN/MIN  OUT/MIN"  # the last minute
    assert frames[1].splitlines()[4] == "QUEUE    READY  LATENCY  LEVELS  IN/MIN  OUT/MIN"  # since the first


def test_status_json_stays_valid_json_when_a_worker_hash_reads_as_nan(obs, worker_env, tmp_path) -> None:
    """A worker hash not written by taskq may hold "nan" or "inf" where a time belongs, which float() reads."""
    b = obs.backend
    b.client.zadd(b.keys.workers, {"elsewhere:1:1": b.server_time_ms()})
    b.client.hset(b.keys.worker("elsewhere:1:1"), mapping={"started": "nan", "pid": "1", "queues": "default"})
    (worker,) = strict_loads(taskq(worker_env, "status", APP, "--json").stdout)["workers"]
    assert worker["id"] == "elsewhere:1:1" and worker["started_at"] is None
    b.client.hset(b.keys.worker("elsewhere:1:1"), "started", "inf")
    proc, out = _popen(worker_env, tmp_path, "status", APP, "--json", "--watch")
    try:
        wait_for(lambda: out.read_text().count("\n") >= 1 or proc.poll() is not None, 30, what="one document")
        assert proc.poll() is None, out.read_text()
    finally:
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=20) == 0, out.read_text()
    (worker,) = strict_loads(out.read_text().splitlines()[0])["workers"]  # one document per line
    assert worker["id"] == "elsewhere:1:1" and worker["started_at"] is None


def test_json_logs_are_one_object_per_line_warnings_included(start_worker, redis_url, namespace) -> None:
    """``--log-format json``: every line of the worker's output is a JSON
    object (the start-up warning about settings too); a job's carry its id."""
    w = start_worker("tests.apps.flagged:app", "--log-format", "json")
    client = build_basic(redis_url, namespace)
    try:
        job = client.tasks["add"].delay(1, 2)
        assert job.result(timeout=15) == 3
        wait_for(lambda: job.id in w.log(), 15, what="the job's log line")
    finally:
        client.close()
    w.stop()
    records = [json.loads(line) for line in w.log().splitlines()]
    assert any(r["level"] == "warning" and "'no.such.task'" in r["message"] for r in records)
    assert any(r.get("job_id") == job.id and r.get("task") == "add" for r in records)
