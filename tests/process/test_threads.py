"""Worker processes that run several jobs at once (``taskq worker -t N``):
each thread is a consumer with its own leases; timeouts, kills and shutdown
treat every thread's jobs as the single-threaded worker treats its one."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator

import pytest

from taskq import JobState, TaskQ
from tests.apps.crashy import build
from tests.conftest import child_pid_running, lines, wait_for, worker_ids_of

APP = "tests.apps.crashy:app"


@pytest.fixture
def client(redis_url: str, namespace: str) -> Iterator[TaskQ]:
    app = build(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


def test_one_process_runs_as_many_jobs_at_once_as_it_has_threads(client, start_worker):
    w = start_worker(APP, "-c", "1", "-t", "4")
    wait_for(lambda: len(worker_ids_of(client, w)) == 4, 20, what="four consumer threads")
    (child,) = w.child_pids()
    # Each job returns only while all four run together: one thread would fail them.
    jobs = client.tasks["together"].map([(4,)] * 4)
    assert [j.result(timeout=30) for j in jobs] == [child] * 4
    assert all(j.info().attempts == 1 for j in jobs)
    assert "concurrency 1 x 4 thread(s)" in w.log()


def test_soft_timeout_reaches_a_task_in_a_thread(client, start_worker, tmp_path):
    w = start_worker(APP, "-c", "1", "-t", "2")
    trace = tmp_path / "trace"
    job = client.tasks["soft"].delay(str(trace))
    wait_for(lambda: job.state == JobState.FAILED, 20, what="soft timeout")
    (line,) = lines(trace)
    assert line.startswith("saw TaskTimeout in ")
    err = job.info().errors[-1]
    assert err["type"] == "TaskTimeout" and err["kind"] == "timeout"
    assert "exceeded its timeout of 0.5s" in err["message"]
    # No kill: the same process serves the next job.
    assert client.tasks["pid"].delay().result(timeout=15) == int(line.rsplit(" ", 1)[1])
    assert "hard timeout" not in w.log()


def test_hard_timeout_in_a_thread_gives_the_other_threads_jobs_back_refunded(client, start_worker, tmp_path):
    w = start_worker(APP, "-c", "1", "-t", "2")
    wait_for(lambda: len(worker_ids_of(client, w)) == 2, 20, what="two consumer threads")
    release, started = tmp_path / "release", tmp_path / "started"
    bystander = client.tasks["wait_file"].delay(str(release), started=str(started))
    wait_for(lambda: lines(started), 15, what="bystander to start")
    spin = client.tasks["spin"].delay()
    wait_for(lambda: spin.state == JobState.ACTIVE, 15, what="spin to start")
    victim = child_pid_running(client, spin.id)
    assert child_pid_running(client, bystander.id) == victim  # one process, two threads

    wait_for(lambda: spin.state == JobState.FAILED, 20, what="spin to be killed")
    err = spin.info().errors[-1]
    assert err["type"] == "TaskTimeout" and "after its timeout of 1s" in err["message"]

    # The bystander was interrupted by the kill, not by its own fault: it runs
    # again on the replacement process with its attempt refunded and no error.
    wait_for(lambda: len(lines(started)) == 2, 20, what="bystander to start again")
    release.touch()
    assert bystander.result(timeout=15) != victim
    info = bystander.info()
    assert info.attempts == 1
    assert not info.errors
    assert "other threads go back to their queue" in w.log()


def test_sigkilled_threaded_child_returns_the_jobs_of_every_thread(client, start_worker, tmp_path):
    w = start_worker(APP, "-c", "1", "-t", "2")
    traces = [tmp_path / "a", tmp_path / "b"]
    jobs = [client.tasks["slow_first"].delay(str(t), 60) for t in traces]
    wait_for(lambda: all(lines(t) for t in traces), 15, what="both jobs to start")
    (victim,) = {child_pid_running(client, j.id) for j in jobs}

    os.kill(victim, signal.SIGKILL)

    assert [j.result(timeout=30) for j in jobs] == [2, 2]
    for j in jobs:
        info = j.info()
        assert (info.attempts, info.lost_count) == (1, 1)
        assert [e["type"] for e in info.errors] == ["WorkerLost"]
    assert victim not in w.child_pids()


def test_graceful_shutdown_lets_every_threads_job_finish(client, start_worker, tmp_path):
    w = start_worker(APP, "-c", "1", "-t", "3")
    release, started = tmp_path / "release", tmp_path / "started"
    jobs = [client.tasks["wait_file"].delay(str(release), started=str(started)) for _ in range(3)]
    wait_for(lambda: len(lines(started)) == 3, 15, what="three jobs to start")
    w.signal(signal.SIGTERM)
    wait_for(lambda: "shutting down" in w.log(), 15, what="shutdown to begin")
    release.touch()
    assert w.wait(30) == 0
    for j in jobs:
        assert j.state == JobState.SUCCEEDED
        assert j.info().attempts == 1
    assert not client.backend.workers()
