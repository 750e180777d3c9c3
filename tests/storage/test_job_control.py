"""Job control (cancel.lua, requeue.lua, stall.lua, unstall.lua, remove.lua,
watch.lua, purge_queue.lua) in every state, and what a task and a producer
see of it: cancel requests, ``Requeue``, progress, ``on_finish``, hooks,
failed-job listing and bulk requeue/purge.
"""

from __future__ import annotations

import logging
import threading
import time

import pytest
import redis

from taskq import BrokerRefused, InvalidJobState, JobNotFound, JobState
from taskq.worker.outcome import Outcome, error_entry
from tests.apps.control import build as build_control_app
from tests.apps.control import consumer, run_until, scratch_key, stop
from tests.conftest import wait_for

ALL = ("scheduled", "queued", "waiting", "active", "stalled", "succeeded", "failed", "cancelled", "skipped")
FINISHED = ("succeeded", "failed", "cancelled", "skipped")


def settle(app, worker, outcomes=(), count=0, queues=("default",)):
    s = app.settings
    caps = (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))
    return app.backend.settle_claim(worker, count, [o.fields() for o in outcomes], list(queues), [], caps)


def claimed(app, task, *args, **call):
    """A job of ``task`` leased by a worker of its own (returns job, worker, token)."""
    queue = "q" + str(time.monotonic_ns())
    job = app.tasks[task].apply_async(args, queue=queue, **call)
    worker = "w-" + job.id
    _, rows = settle(app, worker, count=1, queues=[queue])
    assert rows and rows[0][0].decode() == job.id, job.info()
    return job, worker, int(rows[0][1])


def in_state(app, state: str, **call):
    """A ``noop`` job (or a resource job) brought to ``state`` through the scripts."""
    noop = app.tasks["noop"]
    if state == "scheduled":
        job = noop.apply_async(delay=600, **call)
    elif state == "queued":
        job = noop.apply_async(**call)
    elif state == "stalled":
        job = noop.apply_async(**call)
        job.stall()
    elif state == "cancelled":
        job = noop.apply_async(**call)
        job.cancel()
    elif state in ("waiting", "skipped"):
        task = "locked_wait" if state == "waiting" else "locked_skip"
        claimed(app, task)  # an active job holds the printer
        queue = "q" + str(time.monotonic_ns())
        job = app.tasks[task].apply_async(queue=queue, **call)
        assert settle(app, "w-late", count=1, queues=[queue]) == ([], [])
    else:
        job, worker, token = claimed(app, "noop", **call)
        if state == "succeeded":
            settle(app, worker, [Outcome(job.id, token, "ok", ttl_ms=60_000)])
        elif state == "failed":
            settle(app, worker, [Outcome(job.id, token, "fail", error_entry(ValueError("bad"), 1), ttl_ms=60_000)])
    assert job.state == state, (state, job.info())
    return job


def references(app, job_id: str) -> list[str]:
    """Every key of the namespace that names or holds ``job_id``."""
    b, r = app.backend, app.backend.client
    out = []
    for raw in r.scan_iter(match=b.keys.pattern, count=1000):
        key = raw.decode()
        kind = r.type(raw).decode()
        if job_id in key or kind == "list" and job_id.encode() in r.lrange(raw, 0, -1) or kind == "zset" and r.zscore(raw, job_id) is not None or kind == "set" and r.sismember(raw, job_id) or kind == "string" and r.get(raw) == job_id.encode():
            out.append(key)
    return out


def index_of(app, job) -> list[str]:
    """The job's place in the indexes (its hash and result key aside)."""
    b = app.backend
    return sorted(k.removeprefix(b.prefix) for k in references(app, job.id)
                  if k not in (b.keys.job(job.id), b.keys.result(job.id)))


# ---------------------------------------------------------------- cancel


@pytest.mark.parametrize("state", ["scheduled", "queued", "waiting", "stalled"])
def test_cancel_before_it_runs_ends_the_job_and_it_never_runs(capp, state):
    job = in_state(capp, state)
    assert job.cancel() == "cancelled"
    info = job.info()
    assert info.state == JobState.CANCELLED and info.cancel_count == 1 and info.attempts == 0
    assert info.due_at is None
    assert index_of(capp, job) == ["done"]
    capp.backend.promote(100, now_ms=10**13)
    c = consumer(capp, queues=(info.queue,))
    for _ in range(3):
        c.step()
    stop(c)
    assert job.info().attempts == 0 and job.state == JobState.CANCELLED


def test_cancel_an_active_job_is_a_request_the_task_sees(capp):
    c = consumer(capp)
    job = capp.tasks["wait_cancel"].delay()
    t = threading.Thread(target=run_until, args=(c, lambda: job.state == JobState.CANCELLED))
    t.start()
    try:
        wait_for(lambda: capp.backend.client.lrange(scratch_key(capp, "started"), 0, -1), what="task start")
        assert job.cancel() == "requested"
        info = job.info()
        assert info.state == JobState.ACTIVE and info.cancel_requested and info.cancel_count == 1
        c.heartbeat.beat()  # the worker learns of it on its next heartbeat
        t.join(20)
    finally:
        c.stopping.set()
        t.join(20)
        stop(c)
    info = job.info()
    assert info.state == JobState.CANCELLED
    assert info.errors[-1]["type"] == "Cancelled" and info.errors[-1]["kind"] == "cancelled"
    assert capp.backend.task_counters()["wait_cancel|cancelled"] == 1


def test_cancel_of_a_prefetched_job_stops_it_before_it_starts(capp):
    c = consumer(capp, prefetch=10)
    c.avg_run = 0.0001  # the next claim takes a batch
    capp.tasks["noop"].delay()
    second = capp.tasks["echo"].delay("never")
    run_until(c, lambda: len(c.held) == 2)
    assert second.state == JobState.ACTIVE
    assert second.cancel() == "requested"
    c.heartbeat.beat()
    run_until(c, lambda: second.state.finished)
    stop(c)
    info = second.info()
    assert info.state == JobState.CANCELLED and info.result is None
    assert info.errors[-1]["message"] == "cancelled before it started"


@pytest.mark.parametrize("how", ["reap", "release", "retry"])
def test_a_job_whose_cancel_was_requested_never_runs_again(capp, how):
    """The request outlives the attempt: a job that comes back to its queue
    (worker lost, prefetched job handed back, retry) ends cancelled at its
    next claim instead of running."""
    capp.backend.register_tasks({"noop": 3})
    job, worker, token = claimed(capp, "noop")
    assert job.cancel() == "requested"
    if how == "reap":
        lost = error_entry(None, 0, kind="lost", exc_type="WorkerLost", message="lost")
        assert capp.backend.reap_worker(worker, expected_hb=None, caps=(100, 10, 60_000), lost_blob=lost)
    else:
        kind = "release" if how == "release" else "retry"
        blob = b"" if how == "release" else error_entry(ValueError("x"), 1)
        settle(capp, worker, [Outcome(job.id, token, kind, blob)])
    assert job.state == JobState.QUEUED
    assert settle(capp, "w-next", count=1, queues=[job.info().queue]) == ([], [])
    info = job.info()
    assert info.state == JobState.CANCELLED
    assert info.errors[-1]["type"] == "Cancelled"
    assert capp.backend.task_counters()["noop|cancelled"] == 1


def test_requeue_of_a_job_whose_cancel_was_requested_withdraws_the_request(capp):
    job, worker, token = claimed(capp, "noop")
    assert job.cancel() == "requested"
    job.requeue()
    # the running attempt is still asked to stop; its end queues the job
    assert settle(capp, worker, [Outcome(job.id, token, "cancel", error_entry(ValueError("x"), 1))]) == ([0], [])
    assert not job.info().cancel_requested and job.state == JobState.QUEUED
    _, rows = settle(capp, "w-next", count=1, queues=[job.info().queue])
    assert rows[0][0].decode() == job.id and job.state == JobState.ACTIVE


@pytest.mark.parametrize("state", FINISHED)
def test_cancel_a_finished_job_is_refused(capp, state):
    job = in_state(capp, state)
    with pytest.raises(InvalidJobState, match=f"cannot cancel job '{job.id}': it is {state}") as err:
        job.cancel()
    assert (err.value.state, err.value.operation) == (state, "cancel")
    assert job.state == state


def test_operations_on_a_missing_job_raise_job_not_found(capp):
    for op in ("cancel", "requeue", "stall", "unstall", "retract", "delete"):
        with pytest.raises(JobNotFound):
            getattr(capp.job("nope"), op)()
    with pytest.raises(JobNotFound):
        capp.job("nope").info()


# ---------------------------------------------------------------- requeue


@pytest.mark.parametrize("state", ["failed", "cancelled", "skipped", "scheduled", "stalled", "waiting"])
def test_requeue_puts_the_job_back_in_its_queue(capp, state):
    job = in_state(capp, state)
    before = job.info()
    job.requeue()
    info = job.info()
    assert info.state == JobState.QUEUED
    assert info.requeue_count == before.requeue_count + 1
    assert info.errors == before.errors  # history kept
    assert info.finished_at is None and info.due_at is None
    if state in ("failed", "cancelled", "skipped"):
        assert info.attempts == 0
        assert capp.backend.client.ttl(capp.backend.keys.job(job.id)) == -1  # no longer expires
    assert index_of(capp, job) == [f"q:{info.queue}:0"]
    if state != "waiting":  # (its resource is still held)
        run_c = consumer(capp, queues=(info.queue,))
        run_until(run_c, lambda: job.state.finished)
        stop(run_c)


def test_requeue_failed_resets_attempts(capp):
    job = capp.tasks["flaky"].apply_async(retry=1)
    c = consumer(capp)
    run_until(c, lambda: job.state == JobState.FAILED)
    assert job.info().attempts == 2
    job.requeue()
    assert job.info().attempts == 0
    run_until(c, lambda: job.state == JobState.FAILED)
    stop(c)
    info = job.info()
    assert info.attempts == 2 and info.requeue_count == 1
    assert [e["attempt"] for e in info.errors] == [1, 2, 1, 2]


def test_requeue_an_active_job_discards_the_old_workers_outcome(capp, caplog):
    """The job stays active (its lease held) until the running attempt ends:
    that attempt's outcome is discarded and the job queued, then run again."""
    c1 = consumer(capp, "w1")
    job = capp.tasks["block"].delay("release")
    run_until(c1, lambda: c1.held)
    t = threading.Thread(target=c1.step)  # runs the job
    t.start()
    try:
        wait_for(lambda: capp.backend.client.lrange(scratch_key(capp, "started"), 0, -1), what="task start")
        job.requeue()
        info = job.info()
        assert info.state == JobState.ACTIVE and info.worker == "w1"
        assert info.requeue_requested and info.cancel_requested and info.requeue_count == 1
        job.requeue()  # asked for already: counted once
        assert job.info().requeue_count == 1
        c1.stopping.set()  # so its settle claims nothing more
        with caplog.at_level(logging.WARNING, "taskq.worker"):
            capp.backend.client.rpush(scratch_key(capp, "release"), "1")
            t.join(20)
    finally:
        t.join(20)
    assert f"outcome ok of job {job.id} discarded" in caplog.text
    info = job.info()
    assert info.state == JobState.QUEUED and info.result is None and info.attempts == 0
    assert not info.requeue_requested and not info.cancel_requested
    stop(c1)
    c2 = consumer(capp, "w2")
    capp.backend.client.rpush(scratch_key(capp, "release"), "1")
    run_until(c2, lambda: job.state == JobState.SUCCEEDED)
    stop(c2)
    info = job.info()
    assert (info.attempts, info.requeue_count, info.worker, info.result) == (1, 1, "w2", "released")
    assert capp.backend.task_counters()["block|requeued"] == 1


def test_requeue_of_a_running_job_asks_the_attempt_to_stop_then_runs_it_again(capp):
    """The running attempt sees the request as a cancel (its checkpoint
    raises); its end puts the job back, and the next run is not cancelled."""
    c = consumer(capp)
    job = capp.tasks["wait_cancel"].delay(3.0)
    t = threading.Thread(target=run_until, args=(c, lambda: job.state == JobState.SUCCEEDED, 30))
    t.start()
    try:
        wait_for(lambda: capp.backend.client.lrange(scratch_key(capp, "started"), 0, -1), what="task start")
        job.requeue()
        assert job.state == JobState.ACTIVE
        c.heartbeat.beat()  # the worker learns of it on its next heartbeat
        t.join(30)
    finally:
        c.stopping.set()
        t.join(20)
        stop(c)
    info = job.info()
    assert info.state == JobState.SUCCEEDED and info.result == "not cancelled (False)"
    assert (info.attempts, info.requeue_count) == (1, 1)
    assert len(capp.backend.client.lrange(scratch_key(capp, "started"), 0, -1)) == 2  # two runs, one after the other


def test_raise_requeue_inside_a_task_gives_the_job_back(capp):
    c = consumer(capp)
    job = capp.tasks["requeue_once"].delay("m1")
    run_until(c, lambda: job.state == JobState.SUCCEEDED)
    stop(c)
    info = job.info()
    assert (info.requeue_count, info.attempts, info.result) == (1, 1, "ran")
    assert capp.backend.task_counters()["requeue_once|requeued"] == 1


@pytest.mark.parametrize("state", ["queued", "succeeded"])
def test_requeue_is_refused_for_queued_and_succeeded_jobs(capp, state):
    job = in_state(capp, state)
    with pytest.raises(InvalidJobState, match=f"it is {state}"):
        job.requeue()


def test_requeue_front_puts_the_job_at_the_head(capp):
    jobs = [capp.tasks["noop"].delay() for _ in range(3)]
    failed = in_state(capp, "failed")  # its own queue
    capp.backend.client.hset(capp.backend.keys.job(failed.id), "q", "default")
    failed.requeue(front=True)
    assert capp.backend.ready_ids("default", 10) == [failed.id] + [j.id for j in jobs]


# ---------------------------------------------------------------- stall / unstall


@pytest.mark.parametrize("state", ["queued", "scheduled", "failed"])
def test_stall_holds_the_job_until_unstall(capp, state):
    job = in_state(capp, state)
    job.stall()
    info = job.info()
    assert info.state == JobState.STALLED
    assert index_of(capp, job) == ["stalled"]
    assert capp.backend.client.ttl(capp.backend.keys.job(job.id)) == -1
    capp.backend.promote(100, now_ms=10**13)
    c = consumer(capp, queues=(info.queue,))
    c.step()
    assert job.state == JobState.STALLED
    job.unstall()
    if state == "scheduled":  # back to the schedule: its due time has not come
        assert job.state == JobState.SCHEDULED
        assert index_of(capp, job) == ["sched"]
        capp.backend.promote(100, now_ms=10**13)
    assert job.state == JobState.QUEUED
    assert job.info().attempts == 0
    run_until(c, lambda: job.state == JobState.SUCCEEDED)
    stop(c)


def test_unstall_of_a_scheduled_job_whose_due_time_passed_queues_it(capp):
    job = capp.tasks["noop"].apply_async(delay=0.2)
    job.stall()
    due = int(capp.backend.client.hget(capp.backend.keys.job(job.id), "due"))
    deadline = time.monotonic() + 10
    while capp.backend.server_time_ms() <= due:
        assert time.monotonic() < deadline, "the server's clock did not pass the job's due time"
        time.sleep(0.02)
    assert capp.control.unstall(job.id) == "queued"
    assert job.state == JobState.QUEUED
    [index] = index_of(capp, job)
    assert index.startswith("q:default:")


@pytest.mark.parametrize("state", ["active", "succeeded", "cancelled", "skipped", "waiting", "stalled"])
def test_stall_is_refused_where_it_makes_no_sense(capp, state):
    job = in_state(capp, state)
    with pytest.raises(InvalidJobState, match=f"cannot stall job .*: it is {state}"):
        job.stall()
    assert job.state == state


@pytest.mark.parametrize("state", [s for s in ALL if s != "stalled"])
def test_unstall_is_refused_unless_stalled(capp, state):
    job = in_state(capp, state)
    with pytest.raises(InvalidJobState, match=f"it is {state}"):
        job.unstall()


# ---------------------------------------------------------------- retract / delete


@pytest.mark.parametrize("state", ["queued", "scheduled", "waiting", "stalled"])
def test_retract_removes_a_job_that_has_not_run(capp, state):
    job = in_state(capp, state, unique_key="only-one")
    task = job.info().task
    job.retract()
    assert references(capp, job.id) == []
    with pytest.raises(JobNotFound):
        job.info()
    assert not capp.backend.client.exists(capp.backend.keys.unique("only-one"))
    assert capp.backend.task_counters()[f"{task}|retracted"] == 1


@pytest.mark.parametrize("state", ["active", *FINISHED])
def test_retract_is_refused_once_the_job_ran(capp, state):
    job = in_state(capp, state)
    with pytest.raises(InvalidJobState, match=f"cannot retract job .*: it is {state}"):
        job.retract()


@pytest.mark.parametrize("state", [s for s in ALL if s != "active"])
def test_delete_removes_every_trace_of_the_job(capp, state):
    job = in_state(capp, state, unique_key="del-key")
    job.delete()
    assert references(capp, job.id) == []
    assert not capp.backend.client.exists(capp.backend.keys.unique("del-key"))
    again = capp.tasks["noop"].apply_async(unique_key="del-key")
    assert again.created and again.id != job.id


def test_delete_is_refused_for_an_active_job(capp):
    job = in_state(capp, "active")
    with pytest.raises(InvalidJobState, match="it is active"):
        job.delete()
    assert job.state == JobState.ACTIVE


def test_delete_removes_a_kept_result(capp):
    c = consumer(capp)
    job = capp.tasks["echo"].delay(5)
    job.on_finish(lambda *_: None)  # marks it watched: its outcome is pushed to r:<id>
    run_until(c, lambda: job.state == JobState.SUCCEEDED)
    stop(c)
    assert capp.backend.client.exists(capp.backend.keys.result(job.id))
    job.delete()
    assert references(capp, job.id) == []


# ---------------------------------------------------------------- progress, on_finish, hooks


def test_progress_set_by_the_task_shows_in_info(capp):
    c = consumer(capp)
    job = capp.tasks["progress"].delay("go")
    t = threading.Thread(target=run_until, args=(c, lambda: job.state == JobState.SUCCEEDED))
    t.start()
    try:
        wait_for(lambda: capp.backend.client.lrange(scratch_key(capp, "started"), 0, -1), what="task start")
        progress = job.info().progress
        assert progress["fraction"] == 0.5 and progress["message"] == "half"
        assert abs(progress["at"] - time.time()) < 60
    finally:
        capp.backend.client.rpush(scratch_key(capp, "go"), "1")
        t.join(20)
        stop(c)
    assert job.info().progress["fraction"] == 0.5


def test_progress_from_a_worker_that_lost_the_lease_is_ignored(capp):
    job, worker, token = claimed(capp, "noop")
    assert capp.backend.set_progress(job.id, token, b"\x80")
    lost = error_entry(None, 0, kind="lost", exc_type="WorkerLost", message="lost")
    assert capp.backend.reap_worker(worker, expected_hb=None, caps=(100, 10, 60_000), lost_blob=lost)
    assert not capp.backend.set_progress(job.id, token, b"\x81")


def test_on_finish_fires_once_with_the_outcome(capp):
    calls = []
    done = threading.Event()

    def record(job, state):
        calls.append((job.id, state))
        done.set()

    ok = capp.tasks["echo"].delay(1)
    bad = capp.tasks["fail"].delay()
    ok.on_finish(record)
    bad.on_finish(record)
    c = consumer(capp)
    run_until(c, lambda: ok.state.finished and bad.state.finished)
    stop(c)
    wait_for(lambda: len(calls) == 2, what="both callbacks")
    assert sorted(calls) == sorted([(ok.id, JobState.SUCCEEDED), (bad.id, JobState.FAILED)])
    # registered after the end: called at once
    late = []
    ok.on_finish(lambda job, state: late.append(state))
    assert late == [JobState.SUCCEEDED]
    time.sleep(0.2)
    assert len(calls) == 2 and late == [JobState.SUCCEEDED]


def test_on_finish_works_again_after_the_app_was_closed(capp):
    """close() stops the listener; the app reconnects on its next use, and so
    must on_finish (before, its callbacks were kept by the stopped listener)."""
    states = []
    first = capp.tasks["noop"].apply_async(delay=60)
    first.on_finish(lambda j, s: states.append(s))
    capp.close()
    job = capp.tasks["noop"].apply_async(delay=60)
    job.on_finish(lambda j, s: states.append(s))
    job.cancel()
    wait_for(lambda: states, what="callback")
    assert states == [JobState.CANCELLED]


def test_on_finish_refused_by_the_server_registers_nothing(own_server, namespace):
    """An on_finish that raised (here: a server out of memory refuses the
    watch) leaves no callback behind: called again, the callback fires once."""
    app = build_control_app(own_server.url, namespace)
    admin = redis.Redis.from_url(own_server.url)
    calls = []
    try:
        job = app.tasks["noop"].apply_async(delay=60)
        app.tasks["noop"].apply_async(delay=60).on_finish(lambda j, s: None)  # the listener runs
        admin.config_set("maxmemory", 1)
        try:
            with pytest.raises(BrokerRefused, match="out of memory"):
                job.on_finish(lambda j, s: calls.append(s))
        finally:
            admin.config_set("maxmemory", 0)
        job.on_finish(lambda j, s: calls.append(s))
        job.cancel()
        wait_for(lambda: calls, what="callback")
        assert calls == [JobState.CANCELLED]  # one registration, one call (a job's callbacks run together)
    finally:
        admin.close()
        app.close()


def test_on_finish_of_a_cancelled_job(capp):
    states = []
    job = capp.tasks["noop"].apply_async(delay=60)
    job.on_finish(lambda j, s: states.append(s))
    job.cancel()
    wait_for(lambda: states, what="callback")
    assert states == [JobState.CANCELLED]


def test_listing_a_finished_state_finds_jobs_behind_newer_ones_of_another_state(capp):
    """The done index holds succeeded, cancelled and skipped jobs together: a
    listing of one state reads on until it has ``limit`` jobs or the index ends."""
    done = in_state(capp, "succeeded")
    for _ in range(300):  # newer jobs of another state, in the same index
        capp.tasks["noop"].apply_async().cancel()
    assert [i.id for i in capp.control.list_jobs("succeeded", limit=50)] == [done.id]
    assert [i.id for i in capp.control.list_jobs("succeeded", limit=1)] == [done.id]
    assert len(capp.control.list_jobs("cancelled", limit=120)) == 120


def test_listing_queued_jobs_of_a_task_finds_them_behind_a_thousand_others(capp):
    """Filtered listings of queued jobs read each ready list on until it ends."""
    capp.tasks["noop"].map([(i,) for i in range(1500)])
    late = capp.tasks["echo"].delay("late")
    other = capp.tasks["echo"].apply_async(("other",), queue="other")
    assert [i.id for i in capp.control.list_jobs("queued", task="echo")] == [late.id, other.id]
    assert [i.id for i in capp.control.list_jobs("queued", queue="default", task="echo")] == [late.id]
    assert [i.id for i in capp.control.list_jobs("queued", task="echo", limit=1)] == [late.id]
    assert len(capp.control.list_jobs("queued", task="noop", limit=1200)) == 1200
    assert len(capp.control.list_jobs("queued", limit=3000)) == 1502


def test_listing_active_and_waiting_jobs_of_a_task_finds_them_behind_a_thousand_others(capp):
    """Filtered listings of active and waiting jobs read every lease and every
    waiting job, not the first 1,000 found."""
    claimed(capp, "locked_wait")  # an active job holds the printer
    capp.tasks["locked_wait"].map([() for _ in range(1100)], queue="crowd")
    late = [capp.tasks["echo"].apply_async((i,), queue="crowd", resource="printer", on_locked="wait")
            for i in range(100)]
    settle(capp, "w-crowd", count=2000, queues=["crowd"])  # each finds the printer busy: waiting
    assert {j.state for j in late} == {JobState.WAITING}
    assert {i.id for i in capp.control.list_jobs("waiting", task="echo", limit=100)} == {j.id for j in late}
    assert len(capp.control.list_jobs("waiting", task="locked_wait", limit=2000)) == 1100

    capp.tasks["noop"].map([() for _ in range(1100)], queue="busy")
    for worker in ("w-busy", "w-busy-2"):  # registered: listings read the leases of the registry's workers
        capp.backend.heartbeat(worker, 60_000)
    settle(capp, "w-busy", count=1100, queues=["busy"])
    active = capp.tasks["echo"].apply_async(("active",), queue="busy")
    settle(capp, "w-busy-2", count=1, queues=["busy"])
    assert active.state == JobState.ACTIVE
    assert [i.id for i in capp.control.list_jobs("active", task="echo")] == [active.id]
    assert len(capp.control.list_jobs("active", task="noop", limit=2000)) == 1100


def test_task_hooks_run_after_the_outcome_is_recorded(capp):
    c = consumer(capp)
    ok = capp.tasks["hooked_ok"].delay(21)
    bad = capp.tasks["hooked_fail"].delay()
    run_until(c, lambda: ok.state.finished and bad.state.finished)
    stop(c)
    hooks = sorted(x.decode() for x in capp.backend.client.lrange(scratch_key(capp, "hooks"), 0, -1))
    assert hooks == sorted([f"success {ok.id} 42 succeeded", f"failure {bad.id} KeyError failed"])


def test_an_exception_in_a_hook_is_logged_and_the_job_kept(capp, caplog):
    c = consumer(capp)
    job = capp.tasks["hook_raises"].delay()
    after = capp.tasks["echo"].delay("next")
    with caplog.at_level(logging.ERROR, "taskq.worker"):
        run_until(c, lambda: after.state == JobState.SUCCEEDED)
    stop(c)
    assert job.state == JobState.SUCCEEDED and job.result(timeout=1) == "fine"
    assert "job_succeeded hook of hook_raises raised" in caplog.text
    assert "hook exploded" in caplog.text


# ---------------------------------------------------------------- failed jobs in bulk


@pytest.fixture
def failures(capp):
    fail = capp.tasks["fail"]
    jobs = {
        "v1": fail.delay("one"),
        "v2": fail.delay("two"),
        "k": fail.delay("three", "KeyError"),
        "other": fail.apply_async(("four",), queue="other"),
        "flaky": capp.tasks["flaky"].apply_async(retry=0),
    }
    ok = capp.tasks["echo"].delay("fine")
    c = consumer(capp, queues=("default", "other"))
    run_until(c, lambda: all(j.state.finished for j in [*jobs.values(), ok]))
    stop(c)
    return jobs


def test_failed_jobs_are_listed_with_their_errors(capp, failures):
    ctl = capp.control
    listed = {i.id: i for i in ctl.failed_jobs()}
    assert set(listed) == {j.id for j in failures.values()}
    assert listed[failures["v1"].id].errors[-1]["message"] == "one"
    assert "raise ERRORS[exc_type](message)" in listed[failures["v1"].id].errors[-1]["traceback"]
    assert {i.id for i in ctl.failed_jobs(task="fail")} == {failures[k].id for k in ("v1", "v2", "k", "other")}
    assert {i.id for i in ctl.failed_jobs(queue="other")} == {failures["other"].id}
    assert {i.id for i in ctl.failed_jobs(error_type="KeyError")} == {failures["k"].id}
    assert [i.id for i in ctl.list_jobs("failed", limit=2)] == [i.id for i in ctl.failed_jobs()][:2]


def test_requeue_failed_by_filter_then_all(capp, failures):
    ctl = capp.control
    assert ctl.requeue_failed(error_type="KeyError") == 1
    assert failures["k"].state == JobState.QUEUED
    assert ctl.requeue_failed(queue="other") == 1
    assert failures["other"].state == JobState.QUEUED
    assert ctl.requeue_failed(task="flaky") == 1
    failures["v1"].requeue()
    assert {i.id for i in ctl.failed_jobs()} == {failures["v2"].id}
    assert ctl.requeue_failed() == 1
    assert ctl.failed_jobs() == []
    assert all(j.info().attempts == 0 for j in failures.values())


def test_purge_failed_deletes_matching_failed_jobs(capp, failures):
    ctl = capp.control
    assert ctl.purge_failed(error_type="KeyError") == 1
    with pytest.raises(JobNotFound):
        failures["k"].info()
    assert ctl.purge_failed(task="fail") == 3
    assert [i.id for i in ctl.failed_jobs()] == [failures["flaky"].id]
    assert ctl.purge_failed() == 1
    assert capp.backend.zcard(capp.backend.keys.failed) == 0


def test_purge_queue_deletes_only_queued_jobs_of_that_queue(capp):
    queued = capp.tasks["noop"].map(range(2_500), unique=True)
    other = capp.tasks["noop"].apply_async(queue="other")
    later = capp.tasks["noop"].apply_async(delay=60)
    high = capp.tasks["noop"].apply_async(priority="high")
    assert capp.control.purge_queue("default") == 2_501
    assert capp.backend.queue_levels("default") == {}
    assert all(references(capp, j.id) == [] for j in queued[:5] + [high])
    assert not list(capp.backend.client.scan_iter(match=capp.backend.keys.pattern[:-1] + "u:*"))
    assert other.state == JobState.QUEUED and later.state == JobState.SCHEDULED


def test_on_finish_of_a_missing_job_raises_instead_of_waiting_forever(capp):
    calls = []
    with pytest.raises(JobNotFound):
        capp.job("no-such-job").on_finish(lambda job, state: calls.append(state))
    assert "no-such-job" not in capp.events._callbacks
    assert calls == []


@pytest.mark.parametrize("operation", ["requeue_failed"])
def test_bulk_operations_on_failed_jobs_raise_when_the_server_refuses(own_server, namespace, operation):
    """Only a job that moved on or vanished meanwhile is skipped: a server
    that refuses (out of memory, down) is an error, not a count of 0.
    (purge_failed frees memory, so it runs out of memory too: below.)"""
    app = build_control_app(own_server.url, namespace)
    admin = redis.Redis.from_url(own_server.url)
    try:
        job = in_state(app, "failed")
        admin.config_set("maxmemory", 1)
        try:
            with pytest.raises(BrokerRefused, match="out of memory"):
                getattr(app.control, operation)()
        finally:
            admin.config_set("maxmemory", 0)
        assert job.state == JobState.FAILED
        assert getattr(app.control, operation)() == 1
    finally:
        admin.close()
        app.close()


def test_jobs_can_be_deleted_and_purged_on_a_server_out_of_memory(own_server, namespace):
    """Deleting is how an operator makes room: the scripts that only free
    memory run when the server has reached maxmemory (others are refused)."""
    app = build_control_app(own_server.url, namespace)
    admin = redis.Redis.from_url(own_server.url)
    try:
        failed, doomed = in_state(app, "failed"), in_state(app, "scheduled")
        queued = [in_state(app, "queued") for _ in range(3)]
        admin.config_set("maxmemory", 1)
        try:
            with pytest.raises(BrokerRefused, match="out of memory"):
                app.tasks["noop"].delay()
            doomed.delete()
            assert app.control.purge_failed() == 1
            assert app.control.purge_queue("default") == 3
            app.backend.trim_finished(1, 1)
        finally:
            admin.config_set("maxmemory", 0)
        for job in (failed, doomed, *queued):
            with pytest.raises(JobNotFound):
                job.info()
    finally:
        admin.close()
        app.close()


def test_job_ids_are_exactly_the_jobs_of_the_state_and_queue_asked_for(capp):
    """The finished index holds succeeded, cancelled and skipped jobs together,
    and the leases every active job: the ids of one state and queue only,
    up to the limit (before, other states and queues came along, and the
    active ones of a queue ignored the limit)."""
    done = [in_state(capp, "succeeded") for _ in range(2)]
    in_state(capp, "cancelled")
    noop = capp.tasks["noop"]
    active = [noop.apply_async(queue="a") for _ in range(3)]
    noop.apply_async(queue="z")
    for worker, queue, count in (("w-a", "a", 3), ("w-z", "z", 1)):
        capp.backend.heartbeat(worker, 60_000)  # listings find active jobs in registered workers' leases
        settle(capp, worker, count=count, queues=[queue])
    assert sorted(capp.control.job_ids("succeeded")) == sorted(j.id for j in done)
    assert sorted(capp.control.job_ids("active", queue="a")) == sorted(j.id for j in active)
    assert len(capp.control.job_ids("active", queue="a", limit=2)) == 2
    assert capp.control.job_ids("active", queue="b") == []
