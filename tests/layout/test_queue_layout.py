"""The ``queue`` key layout on one server: each queue's keys in a slot of
their own (``{ns:queue}``), the namespace's ``{ns}`` holding only the
registry, and everything a producer, a worker and the scheduler do working
per queue: results, lookups by id, retries through the schedule, a job
whose worker was killed run again, periodic ticks, events, stats, job
control, and the cross-queue links that one slot cannot hold refused."""

from __future__ import annotations

import pytest
import redis

from taskq import ConfigurationError, JobState, TaskQ
from tests.apps.sharded import build
from tests.conftest import wait_for


@pytest.fixture
def sapp(redis_url, namespace):
    app = build(redis_url, namespace)
    yield app
    for b in [*app.slots.all(), app.backend]:
        b.delete_namespace()
    app.close()


@pytest.fixture
def layout_env(worker_env):
    return {**worker_env, "TASKQ_KEY_LAYOUT": "queue"}


def keys(redis_url: str, namespace: str) -> list[str]:
    r = redis.Redis.from_url(redis_url)
    return sorted(k.decode() for k in r.scan_iter(match="{" + namespace + "*"))


def test_each_queue_has_its_own_slot_and_the_namespace_keeps_only_the_registry(sapp, redis_url, namespace):
    a = sapp.tasks["add"].delay(1, 2)
    b = sapp.tasks["mul"].delay(3, 4)
    found = keys(redis_url, namespace)
    assert f"{{{namespace}:a}}:j:{a.id}" in found and f"{{{namespace}:b}}:j:{b.id}" in found
    assert {k for k in found if k.startswith("{" + namespace + "}")} == {
        f"{{{namespace}}}:layout", f"{{{namespace}}}:slots"}
    assert all(k.startswith((f"{{{namespace}:a}}:", f"{{{namespace}:b}}:", f"{{{namespace}}}:")) for k in found)
    assert sapp.slots.queues() == ["a", "b"]


def test_a_worker_serving_two_slots_runs_both_and_handles_find_their_jobs(sapp, start_worker, layout_env):
    jobs = [sapp.tasks["add"].delay(i, 1) for i in range(20)] + [sapp.tasks["mul"].delay(i, 2) for i in range(20)]
    jobs += sapp.enqueue_many([("add", (i, 10), {}) for i in range(5)] + [("mul", (i, 10), {}) for i in range(5)])
    finished = []
    jobs[-1].on_finish(lambda job, state: finished.append((job.id, state)))  # an event of queue b's slot
    start_worker("tests.apps.sharded:app", "-Q", "a,b", env=layout_env)
    assert [j.result(timeout=20) for j in jobs] == (
        [i + 1 for i in range(20)] + [i * 2 for i in range(20)] + [i + 10 for i in range(5)] + [i * 10 for i in range(5)])
    wait_for(lambda: finished, 10, what="on_finish")
    assert finished == [(jobs[-1].id, JobState.SUCCEEDED)]
    fresh = TaskQ("other", sapp.backend.url, namespace=sapp.settings.namespace, key_layout="queue")
    try:
        found = fresh.job(jobs[25].id)  # no queue known: looked up in the registered slots
        assert found.state == JobState.SUCCEEDED and found.result(timeout=1) == 10
        assert fresh.slots.queue_of(jobs[25].id) == "b"
        stats = fresh.stats()
        assert stats.tasks["add"].counters["succeeded"] == 25 and stats.tasks["mul"].counters["succeeded"] == 25
        assert {"a", "b"} <= set(stats.queues) and stats.worker_count == 1  # and "beat", once its scheduler ran
        assert {w.queues for w in fresh.workers()} == {("a", "b")}
        listed = fresh.control.list_jobs("succeeded", limit=100)
        assert {i.queue for i in listed} == {"a", "b"} and len(listed) == 50
        page = fresh.control.page("succeeded", limit=30)
        rest = fresh.control.page("succeeded", limit=30, cursor=page.next_cursor or "")
        assert len({i.id for i in page.jobs + rest.jobs}) == 50 and rest.next_cursor is None
    finally:
        fresh.close()


def test_retries_go_through_each_slots_schedule_and_a_killed_job_runs_again(sapp, start_worker, layout_env,
                                                                               tmp_path):
    retried = sapp.tasks["flaky"].delay(str(tmp_path / "flaky"))
    killed = sapp.tasks["crash_once"].delay(str(tmp_path / "crash"))
    wp = start_worker("tests.apps.sharded:app", "-Q", "a,b", env=layout_env)
    assert retried.result(timeout=20) == "attempt 2"
    assert killed.result(timeout=30) == "survived"
    info = killed.info()
    assert (info.attempts, info.lost_count) == (1, 1) and info.errors[0]["type"] == "WorkerLost"
    assert "crash_once" in wp.log()


def test_periodic_ticks_fire_once_per_tick_with_two_workers(sapp, start_worker, layout_env, tmp_path):
    log = tmp_path / "beats"
    env = {**layout_env, "BEAT_LOG": str(log)}
    start_worker("tests.apps.sharded:app", "-Q", "beat", env=env)
    start_worker("tests.apps.sharded:app", "-Q", "beat", env=env)
    wait_for(lambda: log.exists() and len(log.read_text().split()) >= 3, 20, what="three ticks")
    ids = log.read_text().split()
    assert len(ids) == len(set(ids))  # two schedulers, each tick once
    assert sapp.slots.queue("beat").cron_last("beat") is not None


def test_on_finish_and_job_control_reach_the_jobs_slot(sapp):
    done = []
    job = sapp.tasks["mul"].apply_async((2, 5), countdown=60)
    assert job.state == JobState.SCHEDULED
    sapp.job(job.id).cancel()
    job.on_finish(lambda j, state: done.append(state))
    assert done == [JobState.CANCELLED]
    sapp.control.pause_queue("b")
    assert {q.name: q.paused for q in sapp.control.queues()} == {"b": True}
    sapp.control.resume_queue("b")
    queued = sapp.tasks["add"].delay(1, 1)
    assert sapp.control.purge_queue("a") == 1
    with pytest.raises(Exception, match="not found|no job"):
        _ = sapp.job(queued.id).state


def test_a_workflow_keeps_each_job_in_its_queues_slot(sapp, redis_url, namespace):
    """(Running them: tests/layout/test_cross_queue_flows.py.)"""
    add, mul = sapp.tasks["add"], sapp.tasks["mul"]
    flow = (add.s(1, 2) | mul.s(3)).apply_async()
    first = add.delay(1, 1)
    dependent = mul.apply_async((1, 2), depends_on=[first])
    found = keys(redis_url, namespace)
    a, b = f"{{{namespace}:a}}:", f"{{{namespace}:b}}:"
    assert {sapp.job(m).info().queue for m in flow.members()} == {"a", "b"}
    for m in flow.members():
        assert (a if sapp.job(m).info().queue == "a" else b) + f"j:{m}" in found
    assert b + f"j:{dependent.id}" in found and b + f"dp:{dependent.id}" in found
    assert dependent.state == JobState.WAITING
    assert sapp.slots.queue("b").job_record(dependent.id).dependency_count == 1


def test_a_worker_refuses_a_namespace_in_the_other_layout(redis_url, namespace, start_worker, worker_env):
    old = TaskQ("old", redis_url, namespace=namespace)
    try:
        old.enqueue("add", 1, 2)
        wp = start_worker("tests.apps.sharded:app", "-Q", "a", env={**worker_env, "TASKQ_KEY_LAYOUT": "queue"},
                          ready=False)
        assert wp.wait(30) != 0
        assert "taskq migrate" in wp.log() and "one-slot key layout" in wp.log()
        sharded = TaskQ("new", redis_url, namespace=namespace + "x", key_layout="queue")
        sharded.enqueue("add", 1, 2)
        back = start_worker("tests.apps.basic:app", env={**worker_env, "TASKQ_NAMESPACE": namespace + "x"},
                            ready=False)
        assert back.wait(30) != 0 and "key_layout='queue'" in back.log()
        for b in [*sharded.slots.all(), sharded.backend]:
            b.delete_namespace()
        sharded.close()
    finally:
        old.backend.delete_namespace()
        old.close()


def test_the_setting_is_checked(redis_url):
    with pytest.raises(ConfigurationError, match="key_layout must be"):
        TaskQ("x", redis_url, key_layout="slots")
    assert TaskQ("x", redis_url, key_layout="queue").settings.key_layout == "queue"


def test_a_sharded_queue_spreads_over_its_shards_and_workers_drain_them_all(redis_url, namespace, start_worker,
                                                                            layout_env):
    app = build(redis_url, namespace, queue_shards={"a": 4})
    try:
        jobs = [app.tasks["add"].delay(i, 0) for i in range(200)]
        jobs += app.enqueue_many([("add", (i, 1), {}) for i in range(200)])
        per_shard = {q.name: q.depth for q in app.control.queues()}
        assert sorted(per_shard) == ["a#0", "a#1", "a#2", "a#3"]
        assert all(30 <= n <= 170 for n in per_shard.values()), per_shard  # crc32 of random ids: spread
        again = app.tasks["add"].apply_async((1, 1), job_id="fixed-id")
        assert app.tasks["add"].apply_async((1, 1), job_id="fixed-id").created is False  # same shard: found
        app.control.pause_queue("a")
        assert all(q.paused for q in app.control.queues())
        app.control.resume_queue("a")
        chained = (app.tasks["add"].s(1, 2) | app.tasks["add"].s(3)).apply_async()  # one shard for all of it
        start_worker("tests.apps.sharded:app", "-Q", "a", env={**layout_env, "TASKQ_QUEUE_SHARDS": "a=4"})
        assert sorted(j.result(timeout=30) for j in jobs) == sorted(list(range(200)) +
                                                                   [i + 1 for i in range(200)])
        assert again.result(timeout=10) == 2 and chained.result(timeout=10) == 6
        assert len(app.control.list_jobs("succeeded", queue="a", limit=1000)) == 404  # and the chain's handle
    finally:
        for b in [*app.slots.all(), app.backend]:
            b.delete_namespace()
        app.close()


def test_queue_shards_is_checked(redis_url):
    with pytest.raises(ConfigurationError, match="needs key_layout='queue'"):
        TaskQ("x", redis_url, queue_shards={"a": 2})
    with pytest.raises(ConfigurationError, match="from 1 to"):
        TaskQ("x", redis_url, key_layout="queue", queue_shards={"a": 0})
    assert TaskQ("x", redis_url, key_layout="queue", queue_shards="a=3, b=1").settings.queue_shards == {"a": 3}


def test_a_resource_lock_lives_in_one_queue_and_another_queue_is_refused(sapp):
    first = sapp.tasks["add"].apply_async((1, 1), resource="printer")
    assert first.state == JobState.QUEUED
    sapp.tasks["add"].apply_async((2, 2), resource="printer")  # the same queue: allowed
    with pytest.raises(ConfigurationError, match="resource 'printer' is used by queue 'a'"):
        sapp.tasks["mul"].apply_async((1, 1), resource="printer")
    other = TaskQ("other", sapp.backend.url, namespace=sapp.settings.namespace, key_layout="queue")
    try:  # the registry is on the server: another process is refused too
        with pytest.raises(ConfigurationError, match="used by queue 'a'"):
            other.enqueue_call("mul", (1, 2), {}, {"queue": "b"}, resource="printer")
    finally:
        other.close()
