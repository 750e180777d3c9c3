"""Crash safety with real ``taskq worker`` processes killed for real:
SIGKILLed children and machines, hard and soft timeouts, poison jobs,
shutdown deadlines, server restarts, durability and eviction warnings."""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from taskq import BrokerUnavailable, DurabilityUnavailable, JobState, TaskQ
from taskq.ephemeral import EphemeralServer
from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig
from tests.apps.crashy import build
from tests.conftest import child_pid_running, lines, wait_for, worker_ids_of

APP = "tests.apps.crashy:app"


@pytest.fixture
def client(redis_url: str, namespace: str) -> Iterator[TaskQ]:
    app = build(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


@pytest.fixture(scope="module")
def aof_server() -> Iterator[EphemeralServer]:
    """A server of this module's own (it gets restarted), appendonly yes."""
    with EphemeralServer(appendonly=True) as server:
        yield server


@pytest.fixture(scope="module")
def plain_server() -> Iterator[EphemeralServer]:
    """A server of this module's own with appendonly no (its config gets changed)."""
    with EphemeralServer(appendonly=False) as server:
        yield server


def task_stat(client: TaskQ, task: str, counter: str) -> int:
    return int(client.backend.task_counters().get(f"{task}|{counter}", 0))


# ---------------------------------------------------------------- lost children


def test_sigkilled_child_mid_job_reruns_on_a_new_child(client, start_worker, tmp_path):
    w = start_worker(APP)
    trace = tmp_path / "trace"
    job = client.tasks["slow_first"].delay(str(trace), 60)
    wait_for(lambda: lines(trace), 15, what="first attempt to start")
    victim = child_pid_running(client, job.id)
    assert victim in w.child_pids()
    assert int(lines(trace)[0].split()[0]) == victim

    os.kill(victim, signal.SIGKILL)

    assert job.result(timeout=30) == 2  # two runs, with retry=0: the lost one used no attempt
    info = job.info()
    assert info.state == JobState.SUCCEEDED
    assert (info.attempts, info.lost_count) == (1, 1)
    assert len(info.errors) == 1
    assert info.errors[0]["type"] == "WorkerLost"
    assert info.errors[0]["kind"] == "lost"
    assert "worker lost" in info.errors[0]["message"]
    (pid1, attempt1, token1), (pid2, attempt2, token2) = (map(int, ln.split()) for ln in lines(trace))
    assert (pid1, attempt1) == (victim, 1)
    assert pid2 != victim and attempt2 == 1
    assert token2 > token1
    assert victim not in w.child_pids()
    assert "killed by SIGKILL" in w.log()
    assert task_stat(client, "slow_first", "lost") == 1
    assert task_stat(client, "slow_first", "retried") == 0


def test_whole_worker_killed_its_job_runs_on_another_after_heartbeat_timeout(client, start_worker, tmp_path):
    hb_timeout = 2.0  # short, and still long enough that a worker slowed by a loaded machine is not taken for dead
    env = {"TASKQ_HEARTBEAT_TIMEOUT": str(hb_timeout)}
    a = start_worker(APP, env=env)
    trace = tmp_path / "trace"
    job = client.tasks["slow_first"].delay(str(trace), 60)
    wait_for(lambda: lines(trace), 15, what="first attempt to start")
    wid_a = client.backend.job_hash(job.id)["w"].decode()
    assert f":{a.pid}:" in wid_a

    b = start_worker(APP, env=env, ready=False)
    wait_for(lambda: worker_ids_of(client, b), 20, what="second worker to register")

    killed = time.monotonic()
    a.kill_all()

    def rerun_started() -> bool:
        return len(lines(trace)) >= 2

    wait_for(rerun_started, 30, interval=0.01, what="the job to run again")
    recovery = time.monotonic() - killed
    assert job.result(timeout=15) == 2
    info = job.info()
    assert (info.attempts, info.lost_count) == (1, 1)  # retry=0, and it ran again
    assert f":{b.pid}:" in (info.worker or "")
    assert "heartbeat stopped" in info.errors[-1]["message"]
    assert wid_a not in [w for w, _ in client.backend.workers()]
    # An upper bound only (expected: about heartbeat_timeout + 0.5 s).
    assert recovery < hb_timeout + 6, recovery
    print(f"recovery after a lost worker: {recovery:.2f}s (heartbeat_timeout {hb_timeout:g}s)")


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie waiting for its new parent to reap it is gone too
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def test_children_of_a_killed_supervisor_finish_their_job_and_exit(client, start_worker, tmp_path):
    w = start_worker(APP)
    release, started = tmp_path / "release", tmp_path / "started"
    job = client.tasks["wait_file"].delay(str(release), started=str(started))
    wait_for(started.exists, 15, what="job to start")
    child = child_pid_running(client, job.id)
    try:
        w.proc.send_signal(signal.SIGKILL)  # the supervisor alone
        w.proc.wait(10)
        assert pid_alive(child), w.log()
        release.touch()
        assert job.result(timeout=15) == child
        wait_for(lambda: not pid_alive(child), 15, what="the orphaned child to exit")
        assert not client.backend.workers()
        assert "the supervisor (pid %d) is gone" % w.pid in w.log()
        # Nobody serves the queue now: a new job waits for a new worker.
        later = client.tasks["add"].delay(1, 1)
        time.sleep(0.2)
        assert later.state == JobState.QUEUED
    finally:
        if pid_alive(child):
            os.kill(child, signal.SIGKILL)


def test_poison_job_fails_after_exactly_its_attempts_and_worker_keeps_serving(client, start_worker):
    w = start_worker(APP)
    job = client.tasks["crash"].delay()  # retry=2, max_lost=2 (the default)
    wait_for(lambda: job.state == JobState.FAILED, 30, what="poison job to fail")
    info = job.info()
    # two losses re-run it free of charge; past max_lost each loss uses an attempt
    assert (info.attempts, info.lost_count) == (3, 5)
    assert len(info.errors) == 5
    assert all(e["type"] == "WorkerLost" and "worker lost" in e["message"] for e in info.errors)
    assert "exited with code 13" in info.errors[-1]["message"]
    assert task_stat(client, "crash", "started") == 5
    assert task_stat(client, "crash", "lost") == 2
    assert task_stat(client, "crash", "failed") == 1
    assert client.tasks["add"].delay(2, 2).result(timeout=15) == 4
    assert w.proc.poll() is None
    assert w.log().count("died: exit code 13") == 5


@pytest.mark.parametrize("how", ["sys.exit", "KeyboardInterrupt"])
def test_task_raising_systemexit_fails_its_job_and_the_process_serves_on(client, start_worker, tmp_path, how):
    w = start_worker(APP)
    trace = tmp_path / "trace"
    job = client.tasks["exit_first"].delay(str(trace), how)
    # not an Exception, so not retried by default (retry_on): failed at once, with its error
    wait_for(lambda: job.state == JobState.FAILED, 15, what="the job to fail")
    info = job.info()
    assert info.attempts == 1
    assert info.errors[-1]["type"] == {"sys.exit": "SystemExit"}.get(how, how)
    ((pid, _),) = (ln.split() for ln in lines(trace))
    assert client.tasks["add"].delay(2, 3).result(timeout=15) == 5
    assert w.child_pids() == [int(pid)]  # the same child serves on: it never exited
    assert "died" not in w.log() and "exited with code" not in w.log()


def test_child_exiting_with_code_0_mid_job_has_its_job_back_at_once(client, start_worker, tmp_path):
    # heartbeat_timeout 60 s: only the supervisor's reap can return the job within the wait below
    w = start_worker(APP, env={"TASKQ_HEARTBEAT_TIMEOUT": "60"})
    trace = tmp_path / "trace"
    job = client.tasks["exit_first"].delay(str(trace), "os._exit")
    assert job.result(timeout=15) != 0
    info = job.info()
    assert (info.attempts, info.lost_count) == (1, 1)
    assert info.errors[0]["type"] == "WorkerLost"
    assert "exited with code 0" in info.errors[0]["message"]
    (pid1, attempt1), (pid2, attempt2) = (ln.split() for ln in lines(trace))
    assert attempt1 == "1" and attempt2 == "1" and pid1 != pid2
    assert "exited with code 0 without handing its jobs back" in w.log()


def test_a_child_stopped_alone_hands_back_cleanly_and_is_replaced(client, start_worker):
    w = start_worker(APP)
    (old,) = w.child_pids()
    os.kill(old, signal.SIGTERM)
    wait_for(lambda: w.child_pids() and old not in w.child_pids(), 15, what="a new child")
    assert client.tasks["add"].delay(1, 2).result(timeout=15) == 3
    assert "without handing its jobs back" not in w.log()


# ---------------------------------------------------------------- timeouts


def test_hard_timeout_kills_only_that_child(client, start_worker, tmp_path):
    w = start_worker(APP, "-c", "2")
    wait_for(lambda: len(worker_ids_of(client, w)) == 2, 20, what="two children")
    release = tmp_path / "release"
    bystander = client.tasks["wait_file"].delay(str(release))
    wait_for(lambda: bystander.state == JobState.ACTIVE, 15, what="bystander to start")
    bystander_pid = child_pid_running(client, bystander.id)

    spin = client.tasks["spin"].delay()
    wait_for(lambda: spin.state == JobState.ACTIVE, 15, what="spin to start")
    spin_pid = child_pid_running(client, spin.id)
    assert spin_pid != bystander_pid

    wait_for(lambda: spin.state == JobState.FAILED, 20, what="spin to be killed")
    info = spin.info()
    assert info.attempts == 1
    assert len(info.errors) == 1
    err = info.errors[0]
    assert err["type"] == "TaskTimeout" and err["kind"] == "timeout"
    assert "after its timeout of 1s" in err["message"]
    assert task_stat(client, "spin", "timed_out") == 1
    assert task_stat(client, "spin", "failed") == 1

    # The child was replaced; the bystander still runs, undisturbed, in its own.
    wait_for(lambda: len(w.child_pids()) == 2 and spin_pid not in w.child_pids(), 15, what="replacement child")
    assert bystander.state == JobState.ACTIVE
    release.touch()
    assert bystander.result(timeout=15) == bystander_pid
    assert bystander.info().attempts == 1
    assert not bystander.info().errors
    assert "over its hard timeout" in w.log()


def test_jobs_done_before_a_quick_task_hung_are_not_run_again_when_it_is_killed(client, start_worker, tmp_path):
    """Outcomes wait to be sent together while the next job of a task that
    has always been quick runs. When that job hangs until its hard timeout
    kills the process, the jobs done before it were recorded meanwhile: only
    the hung job runs again."""
    w = start_worker(APP)
    trace = tmp_path / "trace"
    jobs = client.tasks["hang_at"].map([(str(trace), n, 19) for n in range(20)])
    wait_for(lambda: jobs[19].state == JobState.ACTIVE, 15, what="the last job to start")
    victim = child_pid_running(client, jobs[19].id)
    wait_for(lambda: victim not in w.child_pids(), 20, what="the hard timeout to kill the child")
    wait_for(lambda: jobs[19].state == JobState.SUCCEEDED, 20, what="the hung job's retry")
    runs = collections.Counter(int(line.split()[0]) for line in lines(trace))
    assert runs == {**dict.fromkeys(range(19), 1), 19: 2}
    assert all(j.state == JobState.SUCCEEDED and j.info().attempts == 1 for j in jobs[:19])


@pytest.mark.parametrize(("flags", "attempts"), [({"retry": 1}, 2), ({"retry": 2, "dont_retry_on": ["TaskTimeout"]}, 1)])
def test_hard_timeout_retries_per_the_flags(client, start_worker, flags, attempts):
    start_worker(APP)
    spin = client.tasks["spin"].apply_async(**flags)
    wait_for(lambda: spin.state == JobState.FAILED, 30, what="spin to end failed")
    info = spin.info()
    assert info.attempts == attempts
    assert [e["type"] for e in info.errors] == ["TaskTimeout"] * attempts
    assert task_stat(client, "spin", "timed_out") == attempts


def test_soft_timeout_raises_inside_the_task_which_can_clean_up(client, start_worker, tmp_path):
    w = start_worker(APP)
    trace = tmp_path / "trace"
    job = client.tasks["soft"].delay(str(trace))
    wait_for(lambda: job.state == JobState.FAILED, 20, what="soft timeout")
    (line,) = lines(trace)
    assert line.startswith("saw TaskTimeout in ")
    info = job.info()
    assert info.errors[-1]["type"] == "TaskTimeout"
    assert info.errors[-1]["kind"] == "timeout"
    assert task_stat(client, "soft", "timed_out") == 1
    # The soft timeout did not cost the process: the same child runs the next job.
    assert client.tasks["pid"].delay().result(timeout=15) == int(line.rsplit(" ", 1)[1])
    assert "hard timeout" not in w.log()


# ---------------------------------------------------------------- shutdown


def test_shutdown_deadline_gives_the_running_job_back(client, start_worker, tmp_path):
    w = start_worker(APP, "--shutdown-timeout", "1")
    trace = tmp_path / "trace"
    job = client.tasks["slow_first"].delay(str(trace), 10.0)
    wait_for(lambda: lines(trace), 15, what="job to start")
    assert job.info().attempts == 1
    sent = time.monotonic()
    w.signal(signal.SIGTERM)
    assert w.wait(20) == 0
    took = time.monotonic() - sent
    info = job.info()
    assert info.state == JobState.QUEUED
    assert info.attempts == 0  # refunded
    assert not info.errors
    assert client.backend.ready_ids("default", 10) == [job.id]
    assert not client.backend.workers()
    assert "shutdown timeout" in w.log()
    assert took < 10, took  # did not wait for the job


# ---------------------------------------------------------------- the server


def test_worker_survives_a_graceful_server_restart(aof_server, namespace, start_worker, tmp_path):
    client = build(aof_server.url, namespace, enqueue_retry_timeout=1)
    try:
        w = start_worker(APP, env={"TASKQ_REDIS_URL": aof_server.url})
        out = tmp_path / "marks"
        out.mkdir()
        before = client.tasks["mark"].map([(str(out), n, 0.05) for n in range(40)])
        wait_for(lambda: list(out.iterdir()), 15, what="first jobs to run")

        aof_server.restart(graceful=True)

        after = client.tasks["mark"].map([(str(out), n, 0.0) for n in range(40, 80)])
        jobs = before + after

        def all_done() -> bool:
            return all(h.get("s") == b"succeeded" for h in client.backend.job_hashes([j.id for j in jobs]))

        wait_for(all_done, 60, interval=0.1, what="every job to succeed")
        runs = [int(x) for f in out.iterdir() for x in f.read_text().split()]
        assert set(runs) == set(range(80))
        log = w.log()
        assert log.count("connection to the server restored") <= 1
        if "lost the server" in log.replace("scheduler lost the server", ""):
            assert log.count("connection to the server restored") == 1
        assert w.proc.poll() is None
        w.stop()
        assert w.proc.returncode == 0

        # While the server is down, enqueueing fails within enqueue_retry_timeout.
        aof_server.kill()
        try:
            started = time.monotonic()
            with pytest.raises(BrokerUnavailable):
                client.tasks["add"].delay(1, 2)
            assert time.monotonic() - started < 1 + 5
        finally:
            aof_server.start()
    finally:
        client.backend.delete_namespace()
        client.close()


def test_outcome_reached_while_the_server_is_down_is_recorded_once_it_is_back(aof_server, namespace,
                                                                             start_worker, tmp_path):
    client = build(aof_server.url, namespace)
    admin = redis.Redis.from_url(aof_server.url)
    try:
        w = start_worker(APP, env={"TASKQ_REDIS_URL": aof_server.url})
        release, trace = tmp_path / "release", tmp_path / "trace"
        started = tmp_path / "started"
        job = client.tasks["wait_file"].delay(str(release), str(trace), str(started))
        wait_for(started.exists, 15, what="job to start")

        with contextlib.suppress(redis.ConnectionError):
            admin.shutdown()  # graceful: the AOF is flushed
        wait_for(lambda: aof_server.pid is None, 15, what="server to stop")
        release.touch()  # the job finishes while the server is away
        wait_for(lambda: "retrying with backoff" in w.log(), 15, what="the child to notice")
        aof_server.start()

        pid = job.result(timeout=30)
        assert [line.split() for line in lines(trace)] == [[str(pid), "1"]]  # ran once
        assert job.info().attempts == 1
        wait_for(lambda: "connection to the server restored" in w.log(), 15, what="reconnection")
        assert w.log().count("connection to the server restored") == 1
    finally:
        aof_server.start()
        admin.close()
        with contextlib.suppress(BrokerUnavailable):
            client.backend.delete_namespace()
        client.close()


def test_a_child_starting_while_the_server_is_down_waits_for_it(aof_server, namespace, caplog):
    app = build(aof_server.url, namespace)
    admin = redis.Redis.from_url(aof_server.url)
    consumer = Consumer(app, WorkerConfig(concurrency=1), "late-child")
    try:
        with contextlib.suppress(redis.ConnectionError):
            admin.shutdown()
        wait_for(lambda: aof_server.pid is None, 15, what="server to stop")
        starting = threading.Thread(target=consumer.register, daemon=True)
        starting.start()
        wait_for(lambda: "cannot reach the server to start" in caplog.text, 15, what="the warning")
        assert starting.is_alive()
        aof_server.start()
        starting.join(15)
        assert not starting.is_alive()
        assert "late-child" in [w for w, _ in app.backend.workers()]
        assert caplog.text.count("cannot reach the server to start") == 1
    finally:
        aof_server.start()
        admin.close()
        with contextlib.suppress(BrokerUnavailable):
            app.backend.delete_namespace()
        app.close()


def test_durable_enqueue_is_confirmed_by_an_appendonly_server(aof_server, namespace):
    client = build(aof_server.url, namespace)
    try:
        job = client.tasks["add"].apply_async((1, 2), durable=True)
        assert job.state == JobState.QUEUED
    finally:
        client.backend.delete_namespace()
        client.close()


@pytest.mark.parametrize("call", ["apply_async", "map"])
def test_durable_enqueue_retries_while_the_server_is_down(aof_server, namespace, call):
    """As every enqueue: a server that is down is retried for enqueue_retry_timeout."""
    client = build(aof_server.url, namespace, enqueue_retry_timeout=30)
    add = client.tasks["add"]
    back = threading.Timer(0.3, aof_server.start)
    try:
        client.backend.ping()
        aof_server.kill()
        back.start()
        started = time.monotonic()
        if call == "map":
            jobs = add.map([(1, 2), (3, 4)], durable=True)
        else:
            jobs = [add.apply_async((1, 2), durable=True)]
        assert time.monotonic() - started < 25
        assert all(j.created and j.state == JobState.QUEUED for j in jobs)
        assert client.control.job_ids("queued") == [j.id for j in jobs]  # each once
    finally:
        back.join()
        aof_server.start()
        client.backend.delete_namespace()
        client.close()


def test_durable_enqueue_refused_without_appendonly(plain_server, namespace):
    client = build(plain_server.url, namespace)
    try:
        with pytest.raises(DurabilityUnavailable) as err:
            client.tasks["add"].apply_async((1, 2), durable=True)
        assert "appendonly" in str(err.value)
        assert "WAITAOF" in str(err.value)
        # Without durable=True the same server takes the job.
        assert client.tasks["add"].delay(1, 2).state == JobState.QUEUED
    finally:
        client.backend.delete_namespace()
        client.close()


def test_durable_enqueue_retries_a_server_that_is_briefly_down(aof_server, namespace):
    """A durable ``.delay()`` retries for ``enqueue_retry_timeout`` like any
    other, and reports its job as created."""
    client = build(aof_server.url, namespace, enqueue_retry_timeout=20)
    back = threading.Timer(0.3, aof_server.start)
    try:
        client.backend.ping()
        aof_server.kill()
        back.start()
        job = client.tasks["add"].apply_async((1, 2), durable=True)
        back.join()
        assert job.created and job.state == JobState.QUEUED
    finally:
        back.join()
        aof_server.start()
        client.backend.delete_namespace()
        client.close()


@pytest.mark.parametrize("source", ["decorator", "task_flags"])
def test_durable_from_the_decorator_or_settings_holds_for_map_and_enqueue_many(plain_server, namespace, source):
    """``.delay()`` of a task made durable by its decorator or by settings
    refuses a server that cannot confirm AOF writes; ``.map()`` and
    ``enqueue_many`` of the same task must not quietly skip the check."""
    settings = {"task_flags": {"safe": {"durable": True}}} if source == "task_flags" else {}
    client = build(plain_server.url, namespace, **settings)
    try:
        flags = {"durable": True} if source == "decorator" else {}
        safe = client.task(name="safe", **flags)(lambda n: n)
        assert safe.options.durable
        with pytest.raises(DurabilityUnavailable):
            safe.delay(1)
        with pytest.raises(DurabilityUnavailable) as raised:
            safe.map([(2,), (3,)])
        with pytest.raises(DurabilityUnavailable) as raised_many:
            client.enqueue_many([("safe", (4,), {})])
        # enqueued all the same, only not confirmed on disk: the errors hold their handles
        enqueued = raised.value.enqueued + raised_many.value.enqueued
        assert len(enqueued) == 3 and all(j.created for j in enqueued)
        assert {j.id for j in enqueued} < set(client.control.job_ids("queued"))
    finally:
        client.backend.delete_namespace()
        client.close()


def test_worker_warns_about_an_evicting_server(plain_server, start_worker):
    admin = redis.Redis.from_url(plain_server.url)
    admin.config_set("maxmemory-policy", "allkeys-lru")
    try:
        w = start_worker(APP, env={"TASKQ_REDIS_URL": plain_server.url})
        wait_for(lambda: "maxmemory-policy" in w.log(), 15, what="the warning")
        log = w.log()
        assert "WARNING" in log
        assert "'allkeys-lru'" in log
        assert "noeviction" in log
        w.stop()
    finally:
        admin.config_set("maxmemory-policy", "noeviction")
        admin.close()
