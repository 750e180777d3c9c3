"""Workflows whose jobs use several queues, in the ``queue`` key layout:
each job lives in its queue's slot, and a step's end reaches the job
waiting for it in another slot through the outbox of its own slot, applied
there by that slot's scheduler (``worker/outbox.py``, ``lua/deliver.lua``).
Chains, chords, ``depends_on``, failures, cancels and the retention of a
handle's lists all cross the slots; an outbox entry applied twice counts
once."""

from __future__ import annotations

import pytest
import redis

import taskq
from taskq import JobState, TaskFailed, codec
from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig
from taskq.worker.outbox import deliver_outbox
from taskq.worker.outcome import Outcome
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


def caps(app):
    s = app.settings
    return s.done_max, s.failed_max, s.error_history


def consumer(app, queues):
    c = Consumer(app, WorkerConfig(concurrency=1, block_timeout=0.05, prefetch=4, queues=tuple(queues)), "w-test")
    for b, _ in c.groups:
        b.register_tasks({n: app.options_for(n).max_attempts for n in app.tasks})
    c.heartbeat.beat()
    return c


def test_chains_chords_and_depends_on_across_queues_run_in_a_worker(sapp, start_worker, layout_env, redis_url,
                                                                    namespace):
    add, mul, total = sapp.tasks["add"], sapp.tasks["mul"], sapp.tasks["total"]
    chain = (add.s(1, 2) | mul.s(10) | add.s(5)).apply_async()  # a -> b -> a
    chord = taskq.chord([add.s(1, 1), mul.s(2, 3), add.s(2, 2)], total.s()).apply_async()  # a, b, a -> a
    group = taskq.group(add.s(1, 1), mul.s(2, 3), add.s(2, 2)).apply_async()
    big = taskq.chord([mul.s(i, 1) for i in range(2500)], total.s()).apply_async()  # 3 calls to b's slot
    callback = sapp.slots.queue("a").job_record(next(
        m for m in big.members() if sapp.job(m).info().task == "total"))
    assert callback.state == "waiting" and callback.dependency_count == 2500
    done_first = add.delay(1, 1)
    late = add.apply_async((2, 2), countdown=1.0)
    start_worker("tests.apps.sharded:app", "-Q", "a,b", env=layout_env)
    assert done_first.result(timeout=20) == 2
    after_done = mul.apply_async((2, 3), depends_on=[done_first])  # b waits for a finished job of a
    after_live = mul.apply_async((3, 3), depends_on=[late])  # b waits for a job of a not yet run
    assert after_live.state == JobState.WAITING
    assert chain.result(timeout=20) == 35
    assert chord.result(timeout=20) == 12
    assert big.result(timeout=60) == sum(range(2500))
    assert after_done.result(timeout=20) == 6
    assert after_live.result(timeout=20) == 9
    r = redis.Redis.from_url(redis_url)
    steps = chain.members()
    assert len(steps) == 3
    assert sorted(chain.info().children) == sorted(steps)  # from both slots
    assert {sapp.job(m).info().queue for m in steps} == {"a", "b"}
    mul_step = next(m for m in steps if sapp.job(m).info().queue == "b")
    assert r.exists(f"{{{namespace}:b}}:j:{mul_step}") and not r.exists(f"{{{namespace}:a}}:j:{mul_step}")
    # the handle's members' list in the other slot expires with the handle
    wait_for(lambda: r.pttl(f"{{{namespace}:b}}:wm:{chain.id}") > 0, 10, what="the list's expiry")
    assert [m.value for m in chord.results()] == [12]
    assert [m.value for m in group.results(timeout=20)] == [2, 6, 4]  # in member order, from both slots
    assert all(not r.llen(f"{{{namespace}:{q}}}:ob") for q in ("a", "b"))


def test_a_failure_in_one_queue_cancels_the_steps_of_another_naming_its_cause(sapp, start_worker, layout_env):
    add, boom = sapp.tasks["add"], sapp.tasks["boom"]
    flow = (add.s(1, 1) | boom.si() | add.s(1) | add.s(2)).apply_async()  # a -> b (fails) -> a -> a
    start_worker("tests.apps.sharded:app", "-Q", "a,b", env=layout_env)
    with pytest.raises(TaskFailed) as caught:
        flow.result(timeout=20)
    boom_step = next(m for m in flow.members() if sapp.job(m).info().task == "boom")
    assert caught.value.job_id == boom_step
    last = [sapp.job(m) for m in flow.members() if sapp.job(m).info().task == "add"]
    assert sorted(j.state for j in last) == [JobState.CANCELLED, JobState.CANCELLED, JobState.SUCCEEDED]
    cancelled = [j for j in last if j.state == JobState.CANCELLED]
    for j in cancelled:  # the cause crossed the slots: boom's error, named by the steps two slots away too
        assert "boom" in j.info().errors[-1]["message"] and boom_step in j.info().errors[-1]["message"]


def test_cancelling_a_workflow_reaches_its_jobs_in_other_queues(sapp):
    add, mul = sapp.tasks["add"], sapp.tasks["mul"]
    flow = (add.s(1, 2) | mul.s(3) | add.s(4) | mul.s(5)).apply_async()  # a b a b, nothing runs
    members = [sapp.job(m) for m in flow.members()]
    assert sorted(j.info().queue for j in members) == ["a", "a", "b", "b"]
    assert flow.cancel() == "cancelled"
    a, b = sapp.slots.queue("a"), sapp.slots.queue("b")
    assert {j.state for j in members if j.info().queue == "a"} == {JobState.CANCELLED}
    assert a.outbox()  # the cancel of b's jobs waits in a's outbox
    assert deliver_outbox(sapp, a) >= 1
    deliver_outbox(sapp, b)
    assert [j.state for j in members] == [JobState.CANCELLED] * 4
    assert flow.state == JobState.CANCELLED
    deliver_outbox(sapp, a)  # the handle ended: its list in b's slot expires with it
    assert not a.outbox() and not b.outbox()
    assert b.client.pttl(b.keys.workflow_members(flow.id)) > 0


def finish_one(app, store, queue):
    """Claim one job of ``queue`` and settle it as succeeded with its value
    (a worker's settle, without a worker: what it leaves in the outbox stays)."""
    s = app.settings
    caps = (s.failed_max, s.done_max, s.error_history, 60_000)
    _, rows = store.settle_claim("w-test", 1, [], [queue], [], caps)
    jid, token = rows[0][0].decode(), int(rows[0][1])
    args = codec.loads(store.job_record(jid).payload)[0]
    out = Outcome(jid, token, "ok", codec.dumps(args[0] * args[1]), ttl_ms=60_000)
    settled, _ = store.settle_claim("w-test", 0, [out.fields()], [queue], [], caps)
    assert settled == [1] and store.outbox_written


def test_an_outbox_entry_applied_twice_counts_once(sapp):
    mul, total = sapp.tasks["mul"], sapp.tasks["total"]
    chord = taskq.chord([mul.s(1, 1), mul.s(2, 2)], total.s()).apply_async()  # members in b, callback in a
    a, b = sapp.slots.queue("a"), sapp.slots.queue("b")
    callback = next(sapp.job(m) for m in chord.members() if sapp.job(m).info().task == "total")
    finish_one(sapp, b, "b")
    first = b.outbox()
    assert len(first) == 1
    a.deliver(first, caps(sapp))
    a.deliver(first, caps(sapp))  # a deliverer that died before removing it, and the next pass
    assert callback.state == JobState.WAITING  # one of two counted, however often applied
    finish_one(sapp, b, "b")
    deliver_outbox(sapp, b)
    assert not b.outbox()
    assert callback.state == JobState.QUEUED
    runner = consumer(sapp, ["a"])
    wait_for(lambda: runner.step() or deliver_outbox(sapp, a) or chord.state.finished, 10,
             what="the callback to run and its end to reach the handle")
    assert chord.result(timeout=5) == 5


def test_a_worker_applies_its_settles_outbox_at_once(sapp):
    """The settle that finished a step leaves its end in the outbox; the
    worker applies it right after, before any scheduler runs."""
    add, mul = sapp.tasks["add"], sapp.tasks["mul"]
    flow = (add.s(1, 2) | mul.s(10)).apply_async()
    second = next(sapp.job(m) for m in flow.members() if sapp.job(m).info().task == "mul")
    runner = consumer(sapp, ["a"])
    wait_for(lambda: runner.step() or second.state == JobState.QUEUED, 10, what="the next step to be released")
    assert not sapp.slots.queue("a").outbox()
