"""Every example runs and prints what it promises."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest

from taskq import embedded as srv
from taskq.embedded import stop_embedded_server
from tests.conftest import wait_for

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples"


def run(script: str, env: dict[str, str], cwd: Path) -> str:
    proc = subprocess.run([sys.executable, str(EXAMPLES / script)], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_demo_runs_on_the_embedded_server(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_")}
    env.update({"TASKQ_HOME": str(tmp_path / ".taskq"), "PYTHONPATH": str(ROOT)})
    try:
        out = run("demo.py", env, tmp_path)
        assert srv.embedded_status(tmp_path / ".taskq") is None  # the demo stopped the server it started
    finally:
        stop_embedded_server(tmp_path / ".taskq")
    assert "(embedded) unix://" in out
    assert "add(2, 3) = 5" in out
    assert "flaky: succeeded on attempt 3" in out
    assert "[0, 1, 4, 9, 16, 25, 36, 49, 64, 81]" in out
    assert "demo finished" in out


@pytest.fixture
def example_env(redis_url):
    return {**os.environ, "TASKQ_REDIS_URL": redis_url, "PYTHONPATH": str(ROOT)}


def test_scheduling_example(example_env):
    out = run("scheduling.py", example_env, EXAMPLES)
    assert "state right after enqueue: scheduled" in out
    assert "ok on attempt 3" in out and "upstream down (attempt 2)" in out


def test_job_control_example(example_env):
    out = run("job_control.py", example_env, EXAMPLES)
    assert "returned the same job: True created: False" in out
    assert "cancel a queued job: cancelled" in out
    assert "charged 30 on invoice 42" in out
    assert "the cancelled job: cancelled" in out


def test_web_producer_submits_by_name_and_returns_the_result(example_env, namespace):
    env = {**example_env, "TASKQ_NAMESPACE": namespace}
    worker = subprocess.Popen([sys.executable, "-m", "taskq_cli.main", "worker", "demo_tasks:app", "-c", "1"],
                              cwd=EXAMPLES, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    web = subprocess.Popen([sys.executable, str(EXAMPLES / "web_producer.py"), "--port", "0"], cwd=EXAMPLES,
                           env=env, stdout=subprocess.PIPE, text=True)
    try:
        line = web.stdout.readline()
        url = line.strip().split()[-1]
        body = wait_for(lambda: json.loads(urllib.request.urlopen(f"{url}/add?a=2&b=3", timeout=15).read()),
                        30, interval=0.2, what="web reply")
        assert body["result"] == 5
    finally:
        for p in (web, worker):
            p.terminate()
            p.wait(30)


def test_crash_recovery_example(example_env):
    out = run("crash_recovery.py", example_env, EXAMPLES)
    assert "killing that process with SIGKILL" in out
    assert "order 42 charged on attempt 1 (fencing token " in out
    assert "attempts used: 1, runs lost with their worker: 1" in out
    assert "WorkerLost" in out


def test_observability_example(example_env):
    out = run("observability.py", example_env, EXAMPLES)
    assert "resize: 30 succeeded" in out
    assert 'taskq_jobs_total{task="observability.broken",outcome="failed"} 1' in out
    assert "QUEUE" in out and "WORKER" in out


def test_signed_jobs_example(example_env):
    out = run("signed_jobs.py", example_env, EXAMPLES)
    assert "signed with the current key: transferred 10" in out
    assert "signed with the old key: transferred 20" in out
    assert "unsigned job: failed - SignatureError" in out
