"""Job control end to end: real ``taskq worker`` processes (cancel delivered
by the heartbeat, forced cancel, a child killed while holding a unique key
and a lock, resource locks across processes) and the ``taskq`` job-control
commands.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys

import pytest
from click.testing import CliRunner

import tests.apps.control as control
from taskq import JobState
from taskq.enqueue import new_job_id
from taskq_cli.main import main
from tests.apps.control import build, consumer, run_until, scratch_key, stop
from tests.conftest import ROOT, strict_loads, wait_for

APP = "tests.apps.control:app"
FAST = {"TASKQ_HEARTBEAT_TIMEOUT": "1"}  # heartbeats every 0.2 s


@pytest.fixture
def client(redis_url, namespace):
    app = build(redis_url, namespace, heartbeat_timeout=1)
    yield app
    app.backend.delete_namespace()
    app.close()


def started(app) -> list[str]:
    return [x.decode() for x in app.backend.client.lrange(scratch_key(app, "started"), 0, -1)]


# ---------------------------------------------------------------- real workers


def test_cancel_reaches_a_running_task_through_the_heartbeat(client, start_worker):
    start_worker(APP, env=FAST)
    job = client.tasks["wait_cancel"].delay()
    wait_for(lambda: job.id in started(client), 20, what="task start")
    assert job.cancel() == "requested"
    wait_for(lambda: job.state == JobState.CANCELLED, 20, what="cancellation")
    assert job.info().errors[-1]["type"] == "Cancelled"
    assert client.tasks["echo"].delay("after").result(timeout=20) == "after"


def test_forced_cancel_kills_the_attempt_frees_its_lock_and_the_worker_goes_on(client, start_worker):
    w = start_worker(APP, env=FAST)
    job = client.tasks["block"].apply_async(("never",), resource="printer", unique_key="u1")
    wait_for(lambda: job.id in started(client), 20, what="task start")
    pid_before = w.child_pids()
    assert job.cancel(force=True) == "requested"
    wait_for(lambda: job.state == JobState.CANCELLED, 20, what="forced cancellation")
    b = client.backend
    assert not b.client.exists(b.keys.lock("printer"))
    assert not b.client.exists(b.keys.unique("u1"))
    assert client.tasks["echo"].delay("still serving").result(timeout=20) == "still serving"
    assert w.child_pids() != pid_before  # the child was replaced
    assert "force-cancelled" in w.log()


def test_forced_cancel_in_a_threaded_worker_gives_the_other_threads_job_back_refunded(client, start_worker):
    w = start_worker(APP, "-c", "1", "-t", "2", env=FAST)
    bystander = client.tasks["block"].delay("bystander")
    wait_for(lambda: bystander.id in started(client), 20, what="bystander start")
    job = client.tasks["block"].delay("never")
    wait_for(lambda: job.id in started(client), 20, what="task start")
    (child,) = w.child_pids()
    assert job.cancel(force=True) == "requested"
    wait_for(lambda: job.state == JobState.CANCELLED, 20, what="forced cancellation")
    # The kill took the bystander's thread too: it runs again, attempt refunded, no error.
    wait_for(lambda: started(client).count(bystander.id) == 2, 20, what="bystander to run again")
    assert child not in w.child_pids()
    client.backend.client.rpush(scratch_key(client, "bystander"), "go")
    assert bystander.result(timeout=20) == "released"
    info = bystander.info()
    assert info.attempts == 1
    assert not info.errors


def test_forced_cancel_records_the_outcomes_of_the_jobs_that_finished_before_it(client, start_worker):
    """Outcomes are settled in batches: a job that finished just before the
    cancelled one started still waits, unrecorded, while it runs. The forced
    cancel killed the process with that outcome unsent: the finished job
    went back to its queue (attempt refunded) and ran a second time."""
    start_worker(APP, env=FAST)
    order = scratch_key(client, "order")
    warm = client.tasks["stamp"].delay("warm-up")  # a measured run time: the next claim takes a batch
    wait_for(lambda: warm.state == JobState.SUCCEEDED, 20, what="the warm-up job")
    first, job = client.enqueue_many([("stamp", ("first",), {}), ("block", ("never",), {})])
    wait_for(lambda: job.id in started(client), 20, what="task start")
    assert job.cancel(force=True) == "requested"
    wait_for(lambda: job.state == JobState.CANCELLED, 20, what="forced cancellation")
    wait_for(lambda: first.state == JobState.SUCCEEDED, 20, what="the first job's outcome")
    assert client.tasks["echo"].delay("after").result(timeout=20) == "after"  # the new child serves
    tags = [x.decode() for x in client.backend.client.lrange(order, 0, -1)]
    assert tags == ["warm-up", "first"], tags  # "first" ran once


def test_a_finished_jobs_outcome_is_recorded_before_a_long_job_starts(client, start_worker):
    """Outcomes wait up to flush_interval for a batch. A job of a task not yet
    seen to run quickly may be long: the outcomes waiting go first, or the
    finished job would show as active (its result, unique key and resource
    held back) for the whole of the long run, and run again after a crash."""
    start_worker(APP, env=FAST)
    warm = client.tasks["stamp"].delay("warm-up")  # a measured run time: the next claim takes a batch
    wait_for(lambda: warm.state == JobState.SUCCEEDED, 20, what="the warm-up job")
    first, job = client.enqueue_many([("stamp", ("first",), {}), ("block", ("long-run",), {})])
    wait_for(lambda: job.id in started(client), 20, what="task start")
    try:
        # the long job runs until released (or for 20 s): the outcome must not wait for its end
        wait_for(lambda: first.state == JobState.SUCCEEDED, 15, what="the first job's outcome during the long run")
        assert job.state == JobState.ACTIVE
    finally:
        client.backend.client.rpush(scratch_key(client, "long-run"), "go")
    wait_for(lambda: job.state == JobState.SUCCEEDED, 20, what="the long job")


def test_a_killed_child_frees_the_unique_key_and_lock_of_its_last_attempt(client, start_worker):
    w = start_worker(APP, env=FAST)
    # max_lost=0: its first loss is its last attempt
    job = client.tasks["block"].apply_async(("never",), unique_key="report", resource="printer", max_lost=0)
    wait_for(lambda: job.id in started(client), 20, what="task start")
    assert client.tasks["block"].apply_async(("never",), unique_key="report").created is False
    for pid in w.child_pids():
        os.kill(pid, signal.SIGKILL)
    wait_for(lambda: job.state == JobState.FAILED, 20, what="the supervisor to reap the child")
    info = job.info()
    assert info.errors[-1]["type"] == "WorkerLost" and info.attempts == 1
    b = client.backend
    assert not b.client.exists(b.keys.lock("printer"))
    again = client.tasks["echo"].apply_async(("new",), unique_key="report")
    assert again.created and again.result(timeout=20) == "new"


def test_wait_locks_hold_across_worker_processes(client, start_worker):
    start_worker(APP, "-c", "3", env=FAST)
    locked = [client.tasks["locked_wait"].delay(0.02) for _ in range(20)]
    others = [client.tasks["echo"].delay(i) for i in range(10)]
    wait_for(lambda: all(j.state.finished for j in locked + others), 60, 0.1, "all jobs")
    assert {j.state for j in locked + others} == {JobState.SUCCEEDED}
    rows = sorted((float(s), float(e)) for _, _, s, e in
                  (x.decode().split() for x in client.backend.client.lrange(scratch_key(client, "spans"), 0, -1)))
    assert len(rows) == 20
    assert all(b[0] >= a[1] for a, b in zip(rows, rows[1:])), "two resource jobs overlapped"
    assert {int(x) for x in client.backend.client.lrange(scratch_key(client, "max"), 0, -1)} == {1}


# ---------------------------------------------------------------- CLI


@pytest.fixture
def cli(client, monkeypatch):
    """Invoke ``taskq`` in-process with ``-A tests.apps.control:app`` bound to this test's app."""
    monkeypatch.setattr(control, "app", client)
    runner = CliRunner()

    def invoke(*args: str, ok: bool = True):
        result = runner.invoke(main, list(args), catch_exceptions=False)
        if ok:
            assert result.exit_code == 0, result.output
        return result

    return invoke


def run_all(app, jobs, queues=("default",)):
    c = consumer(app, queues=queues)
    run_until(c, lambda: all(j.state.finished for j in jobs))
    stop(c)


def test_cli_job_show_and_json(client, cli):
    job = client.tasks["fail"].delay("kaput")
    run_all(client, [job])
    out = cli("job", "show", job.id, "-A", APP).output
    assert f"id: {job.id}" in out and "state: failed" in out
    assert "error: attempt 1: ValueError: kaput" in out
    data = json.loads(cli("job", "show", job.id, "-A", APP, "--json").output)
    assert data["state"] == "failed" and data["errors"][0]["message"] == "kaput"
    missing = cli("job", "show", "nope", "-A", APP, ok=False)
    assert missing.exit_code == 1 and "JobNotFound" in missing.output


def test_cli_purge_refuses_a_bad_queue_name_as_queue_pause_does(client, cli):
    for args in (("purge", "-Q", "a b", "--yes"), ("queue", "pause", "a b")):
        out = cli(*args, "-A", APP, ok=False)
        assert out.exit_code == 1 and "queue must be a non-empty name" in out.output


def test_cli_job_show_of_a_workflow_step_whose_handle_is_gone(client, cli):
    echo = client.tasks["echo"]
    w = (echo.s(1) | echo.si(2)).delay()
    steps = w.members()
    run_all(client, [w])
    client.job(w.id).delete()
    out = cli("job", "show", steps[-1], "-A", APP)
    assert out.exit_code == 0 and f"id: {steps[-1]}" in out.output and "workflow:" in out.output


def test_cli_json_of_jobs_whose_maps_have_keys_that_are_not_strings(client, cli):
    """Arguments and results may be maps keyed by ints, tuples, or a mix of
    types: the JSON output gives their keys as strings."""
    mixed = client.tasks["echo"].delay({1: "a", "b": 2})
    tupled = client.tasks["echo"].delay({(1, 2): "t", None: [{b"k": 1.5}]})
    run_all(client, [mixed, tupled])
    data = json.loads(cli("job", "show", mixed.id, "-A", APP, "--json").output)
    assert data["args"] == [{"1": "a", "b": 2}] and data["result"] == {"1": "a", "b": 2}
    data = json.loads(cli("job", "show", tupled.id, "-A", APP, "--json").output)
    assert data["result"] == {"(1, 2)": "t", "null": [{"b'k'": 1.5}]}
    rows = json.loads(cli("jobs", "--state", "succeeded", "--json", "-A", APP).output)
    assert {r["id"] for r in rows} == {mixed.id, tupled.id}
    failed = client.tasks["fail"].delay({2: "x", "y": 1})
    run_all(client, [failed])
    (row,) = json.loads(cli("failed", "list", "--json", "-A", APP).output)
    assert row["args"] == [{"2": "x", "y": 1}]


def test_cli_json_of_jobs_whose_arguments_or_result_are_nan_or_infinite_is_valid_json(client, cli):
    """JSON has no NaN or infinity: they are written as null."""
    odd = [math.nan, {"hi": math.inf, "lo": -math.inf}, 1.5]
    job = client.tasks["echo"].delay(odd)
    failed = client.tasks["fail"].delay(math.nan)
    run_all(client, [job, failed])
    expected = [None, {"hi": None, "lo": None}, 1.5]
    data = strict_loads(cli("job", "show", job.id, "-A", APP, "--json").output)
    assert data["args"] == [expected] and data["result"] == expected
    (row,) = strict_loads(cli("jobs", "--state", "succeeded", "--json", "-A", APP).output)
    assert row["id"] == job.id and row["result"] == expected
    for args in (["failed", "list"], ["jobs", "--state", "failed"]):
        (row,) = strict_loads(cli(*args, "--json", "-A", APP).output)
        assert row["id"] == failed.id and row["args"] == [None]


def test_cli_jobs_table_keeps_a_multi_line_error_on_the_job_row(client, cli):
    job = client.tasks["fail"].delay("first line\n  second line\r\nthird")
    run_all(client, [job])
    for args in (["jobs", "--state", "failed"], ["failed", "list"]):
        header, row = cli(*args, "-A", APP).output.splitlines()
        assert header.startswith("ID ") and row.startswith(job.id)
        assert row.endswith("ValueError: first line second line third")


def test_cli_controls_one_job_through_its_states(client, cli):
    job = client.tasks["noop"].apply_async(delay=600)
    assert "stall ok (was scheduled)" in cli("job", "stall", job.id, "-A", APP).output
    assert job.state == JobState.STALLED
    assert "unstall ok (now scheduled)" in cli("job", "unstall", job.id, "-A", APP).output  # due in 10 min
    assert job.state == JobState.SCHEDULED
    assert "cancel ok (cancelled)" in cli("job", "cancel", job.id, "-A", APP).output
    refused = cli("job", "cancel", job.id, "-A", APP, ok=False)
    assert refused.exit_code == 1
    assert f"InvalidJobState: cannot cancel job '{job.id}': it is cancelled" in refused.output
    assert "Traceback" not in refused.output
    assert "requeue ok (was cancelled)" in cli("job", "requeue", job.id, "-A", APP, "--front").output
    assert job.state == JobState.QUEUED
    assert "retract ok (was queued)" in cli("job", "retract", job.id, "-A", APP).output
    assert client.backend.job_hash(job.id) == {}
    other = client.tasks["fail"].delay()
    run_all(client, [other])
    assert "delete ok (was failed)" in cli("job", "delete", other.id, "-A", APP).output
    assert client.backend.job_hash(other.id) == {}


def test_cli_jobs_failed_requeue_and_purge(client, cli):
    failed = [client.tasks["fail"].delay(str(i)) for i in range(3)]
    keyerr = client.tasks["fail"].apply_async(("k", "KeyError"), queue="other")
    run_all(client, [*failed, keyerr], queues=("default", "other"))
    rows = json.loads(cli("jobs", "--state", "failed", "--json", "-A", APP).output)
    assert {r["id"] for r in rows} == {j.id for j in [*failed, keyerr]}
    assert all(r["state"] == "failed" and r["errors"] for r in rows)
    table = cli("jobs", "--state", "failed", "-A", APP, "--queue", "other").output
    assert keyerr.id in table and failed[0].id not in table
    assert "requeued 1 failed job(s)" in cli("failed", "requeue", "-A", APP, "--error-type", "KeyError").output
    assert keyerr.state == JobState.QUEUED
    assert "requeued 3 failed job(s)" in cli("failed", "requeue", "-A", APP).output
    assert {j.state for j in failed} == {JobState.QUEUED}
    assert "deleted 3 queued job(s) from default" in cli("purge", "--queue", "default", "--yes", "-A", APP).output
    assert all(client.backend.job_hash(j.id) == {} for j in failed)
    assert keyerr.state == JobState.QUEUED  # other queue untouched
    aborted = cli("purge", "--queue", "other", "-A", APP, ok=False)  # no --yes, no confirmation
    assert aborted.exit_code == 1 and keyerr.state == JobState.QUEUED


def test_generated_job_ids_are_never_taken_for_options():
    assert not [jid for jid in (new_job_id() for _ in range(20_000)) if jid.startswith("-")]


def test_cli_in_a_subprocess_reads_the_app_from_the_environment(client, worker_env):
    job = client.tasks["fail"].delay("sub")
    run_all(client, [job])
    env = {**worker_env, "TASKQ_APP": APP}
    out = subprocess.run([sys.executable, "-m", "taskq_cli.main", "jobs", "--state", "failed", "--json"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert [r["id"] for r in json.loads(out.stdout)] == [job.id]
    out = subprocess.run([sys.executable, "-m", "taskq_cli.main", "job", "requeue", job.id, "-A", APP],
                         cwd=ROOT, env=worker_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert job.state == JobState.QUEUED
