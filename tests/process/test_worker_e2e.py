"""End to end: real ``taskq worker`` processes on a real server."""

from __future__ import annotations

import signal
import subprocess
import sys

import pytest

from taskq import JobState, ResultTimeout, TaskFailed
from tests.apps.basic import build
from tests.conftest import wait_for


@pytest.fixture
def client(redis_url, namespace):
    app = build(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


def test_add_returns_result_across_processes(client, start_worker):
    start_worker()
    assert client.tasks["add"].delay(2, 3).result(timeout=10) == 5


def test_enqueue_by_name_from_an_app_without_the_task(client, start_worker, make_app):
    start_worker()
    producer = make_app()  # knows no tasks: a web process that only submits
    job = producer.enqueue("add", 20, 22)
    assert job.result(timeout=10) == 42


def test_failure_raises_task_failed_with_remote_type_and_message(client, start_worker):
    start_worker()
    with pytest.raises(TaskFailed) as err:
        client.tasks["fail"].delay("bad").result(timeout=10)
    assert err.value.exc_type == "ValueError"
    assert err.value.message == "bad"
    assert "raise ValueError(message)" in err.value.traceback


def test_result_timeout_on_a_slow_job_and_the_job_goes_on(client, start_worker, tmp_path):
    start_worker("tests.apps.crashy:app")  # the tasks of tests.apps.basic, and wait_file
    release, started = tmp_path / "release", tmp_path / "started"
    job = client.enqueue("wait_file", str(release), started=str(started))  # runs until released
    with pytest.raises(ResultTimeout):
        job.result(timeout=0.2)
    wait_for(started.exists, 15, what="job to start")
    release.touch()
    assert job.result(timeout=10) == int(started.read_text())


def test_unknown_task_fails_with_clear_error_and_worker_keeps_serving(client, start_worker):
    start_worker()
    job = client.enqueue("no.such.task", 1)
    wait_for(lambda: job.state == JobState.FAILED, 10, what="unknown task to fail")
    err = job.info().errors[-1]
    assert err["type"] == "UnknownTask"
    assert "unknown task 'no.such.task' in namespace " in err["message"] and "knows: " in err["message"]
    assert "add" in err["message"]
    assert client.tasks["add"].delay(1, 1).result(timeout=10) == 2


def test_sigterm_lets_the_running_job_finish_and_leaves_queued_jobs(client, start_worker, tmp_path):
    w = start_worker("tests.apps.crashy:app")  # the tasks of tests.apps.basic, and wait_file
    release, started = tmp_path / "release", tmp_path / "started"
    running = client.enqueue("wait_file", str(release), started=str(started))
    wait_for(started.exists, 15, what="job to start")
    queued = [client.tasks["add"].delay(1, 2) for _ in range(3)]
    w.signal(signal.SIGTERM)
    wait_for(lambda: "shutting down" in w.log(), 15, what="shutdown to begin")
    release.touch()  # the running job ends only once the worker is stopping
    assert w.wait(30) == 0
    assert running.state == JobState.SUCCEEDED
    assert running.result(timeout=1) == int(started.read_text())
    assert [j.state for j in queued] == [JobState.QUEUED] * 3
    assert not client.backend.workers()


def test_include_loads_a_further_task_module(client, start_worker):
    start_worker("tests.apps.basic:app", "--include", "tests.apps.extra")
    job = client.enqueue("extra", 4)
    assert job.result(timeout=10) == 40


def test_recover_returns_the_jobs_of_a_dead_worker(client, start_worker, worker_env):
    env = {"TASKQ_HEARTBEAT_TIMEOUT": "1"}
    w = start_worker("tests.apps.basic:app", "--no-scheduler", env=env)
    job = client.tasks["sleep"].apply_async((30.0,))  # retry=0: a loss re-runs it all the same
    wait_for(lambda: job.state == JobState.ACTIVE, 10, what="job to start")
    w.kill_all()
    assert job.state == JobState.ACTIVE  # nobody has noticed yet: no scheduler runs

    def recover():
        out = subprocess.run([sys.executable, "-m", "taskq_cli.main", "recover", "tests.apps.basic:app"],
                             env={**worker_env, **env}, capture_output=True, text=True, timeout=30)
        assert out.returncode == 0, out.stderr
        return out.stdout if job.id in out.stdout else None

    out = wait_for(recover, 15, interval=0.3, what="recover to reap the dead worker")
    assert "reaped " in out and "1 job(s)" in out
    assert job.state == JobState.QUEUED
    assert (job.info().attempts, job.info().lost_count) == (0, 1)


def test_a_long_non_ascii_job_id_does_not_bring_the_supervisor_down(client, start_worker):
    """Job ids may be 200 characters; the slot telling the supervisor which job
    runs held 255 bytes, so 130 'é' were cut mid-character and the
    supervisor's next look at the slot raised UnicodeDecodeError."""
    w = start_worker()
    job = client.tasks["sleep"].apply_async((0.5, "done"), job_id="é" * 130)
    assert job.result(timeout=15) == "done"
    assert client.tasks["add"].delay(1, 2).result(timeout=15) == 3
    assert w.proc.poll() is None, w.log()
    assert "Traceback" not in w.log(), w.log()
