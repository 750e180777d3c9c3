"""Flow control in the claim (settle_claim.lua with _lib.lua's flow
functions) and the scheduler's flow pass (flow_pass.lua): rate limits,
concurrency limits, resource semaphores, paused queues and expiry.

Time is an input: every claim and pass gets an explicit ``now_ms``.
"""

from __future__ import annotations

import datetime as dt

import pytest

from taskq import JobNotFound, JobState
from taskq.worker.outcome import Outcome, error_entry
from taskq.worker.scheduler import Scheduler

LOST = error_entry(None, 0, kind="lost", exc_type="WorkerLost", message="worker lost")


def caps(app):
    s = app.settings
    return (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))


def claim(app, now, worker="w1", count=100, outcomes=(), queues=("default",)):
    """Settle ``outcomes`` and claim: the claimed job ids."""
    _, jobs = app.backend.settle_claim(worker, count, [o.fields() for o in outcomes], list(queues), [], caps(app),
                                       now_ms=now)
    return [j[0].decode() for j in jobs], {j[0].decode(): int(j[1]) for j in jobs}


def flow_pass(app, now, queue="default"):
    return app.backend.flow_pass(queue, 60_000, app.settings.done_max, now_ms=now)


@pytest.fixture
def t0(app):
    return app.backend.server_time_ms() + 1000


def test_a_rate_limit_starts_its_burst_then_parks_the_rest_in_order_without_blocking_others(app, t0):
    limited = app.task(name="limited", rate_limit=(10, 1.0), rate_burst=2)(lambda i: i)
    free = app.task(name="free")(lambda i: i)
    a = [limited.delay(i) for i in range(5)]
    b = [free.delay(i) for i in range(3)]
    got, _ = claim(app, t0)
    assert got == [a[0].id, a[1].id] + [j.id for j in b]  # the burst, and every job of the other task
    held = a[2:]
    assert [j.state for j in held] == [JobState.WAITING] * 3
    assert all(j.info().attempts == 0 for j in held)  # held back uses no attempt
    assert app.control.queues()[0].held == 3

    assert flow_pass(app, t0 + 50)[:2] == (0, 0)  # one start per 100 ms: not yet
    moved, _, nxt = flow_pass(app, t0 + 100)
    assert moved == 1 and nxt == t0 + 200
    assert claim(app, t0 + 100)[0] == [held[0].id]  # the oldest first
    assert claim(app, t0 + 150)[0] == []  # nothing ready: nobody claims in vain
    assert flow_pass(app, t0 + 200)[0] == 1
    assert claim(app, t0 + 200)[0] == [held[1].id]


def test_a_claim_that_runs_late_catches_up_within_the_burst(app, t0):
    limited = app.task(name="limited", rate_limit="10/s")(lambda i: i)  # burst: the count
    jobs = [limited.delay(i) for i in range(25)]
    assert len(claim(app, t0)[0]) == 10
    assert claim(app, t0 + 1)[0] == []
    moved, _, _ = flow_pass(app, t0 + 1000)  # a second later: ten more starts allowed
    assert moved == 10
    assert len(claim(app, t0 + 1000)[0]) == 10
    assert sum(j.state == JobState.WAITING for j in jobs) == 5


def test_a_rate_limit_key_limits_each_key_separately(app, t0):
    send = app.task(name="send", rate_limit=(1, 60.0), rate_limit_key=lambda customer: f"cust:{customer}")(
        lambda customer: customer)
    first = [send.delay(c) for c in ("a", "b", "a", "b")]
    got, _ = claim(app, t0)
    assert got == [first[0].id, first[1].id]
    per_call = send.apply_async(("c",), rate_limit_key="cust:a")
    assert claim(app, t0)[0] == [] and per_call.state == JobState.WAITING


def test_a_concurrency_limit_holds_jobs_until_a_settle_frees_a_slot(app, t0):
    slow = app.task(name="slow", concurrency=2)(lambda i: i)
    jobs = [slow.delay(i) for i in range(4)]
    got, tokens = claim(app, t0)
    assert got == [jobs[0].id, jobs[1].id]
    assert jobs[2].state == JobState.WAITING
    # the outcome frees a slot: the oldest held job is claimable in the same call
    got, tokens2 = claim(app, t0 + 5, outcomes=[Outcome(jobs[0].id, tokens[jobs[0].id], "ok")])
    assert got == [jobs[2].id]
    assert jobs[3].state == JobState.WAITING
    assert claim(app, t0 + 6, worker="w2")[0] == []


def test_a_dead_workers_slots_free_when_it_is_reaped(app, t0):
    slow = app.task(name="slow", concurrency=2)(lambda i: i)
    jobs = [slow.delay(i) for i in range(3)]
    assert claim(app, t0, worker="dead")[0] == [jobs[0].id, jobs[1].id]
    app.backend.reap_worker("dead", expected_hb=None, caps=(10, 10, 60_000), lost_blob=LOST, now_ms=t0 + 10)
    # its two jobs went back to the front, and the held one moved back too: all three claimable, two at once
    got, _ = claim(app, t0 + 20, worker="w2")
    assert len(got) == 2 and set(got) <= {j.id for j in jobs}


@pytest.mark.parametrize("end", ["outcome", "reap"])
def test_a_job_requeued_while_it_runs_keeps_its_slot_until_the_attempt_ends(app, t0, end):
    """Requeuing an active job leaves its concurrency slot held while the
    attempt still runs in its worker: nothing the limit holds back starts
    (not at the recheck either) until the attempt ends; then the slot frees,
    the held job moves back and starts, and the requeued job waits its turn."""
    slow = app.task(name="slow", concurrency=1)(lambda i: i)
    first, second = slow.delay(1), slow.delay(2)
    got, tokens = claim(app, t0)
    assert got == [first.id] and second.state == JobState.WAITING
    assert app.control.requeue(first.id) == "active"
    assert first.state == JobState.ACTIVE
    slots = app.backend.keys.slots("default", "c:slow")
    assert app.backend.client.smembers(slots) == {first.id.encode()}
    assert flow_pass(app, t0 + 10_000)[0] == 0  # the recheck finds the slot still taken
    assert claim(app, t0 + 10_000, worker="w2")[0] == [] and second.state == JobState.WAITING
    if end == "reap":
        assert app.backend.reap_worker("w1", expected_hb=None, caps=(10, 10, 60_000), lost_blob=LOST,
                                       now_ms=t0 + 10_001) == {first.id: "requeued"}
        got, _ = claim(app, t0 + 10_002, worker="w2")
    else:
        got, _ = claim(app, t0 + 10_001, outcomes=[Outcome(first.id, tokens[first.id], "ok")])
    assert got == [second.id]  # the held job, moved to the front when the slot freed
    assert first.state == JobState.WAITING and first.info().attempts == 0  # queued again, then held back
    assert app.backend.client.smembers(slots) == {second.id.encode()}


def test_a_slot_whose_lease_ended_unseen_is_freed_at_the_limit(app, t0):
    slow = app.task(name="slow", concurrency=1)(lambda i: i)
    app.backend.client.sadd(app.backend.keys.slots("default", "c:slow"), "gone")  # a holder that is no job
    job = slow.delay(1)
    assert claim(app, t0)[0] == [job.id]


def test_a_resource_limit_is_a_semaphore_that_skips_or_waits(app, t0):
    skip = app.task(name="skip", resource="db", resource_limit=2)(lambda i: i)
    wait = app.task(name="wait", resource="db", resource_limit=2, on_locked="wait")(lambda i: i)
    a = [skip.delay(i) for i in range(3)]
    assert claim(app, t0)[0] == [a[0].id, a[1].id]
    assert a[2].state == JobState.SKIPPED and a[2].info().skipped_by in (a[0].id, a[1].id)
    w = wait.delay(1)
    assert claim(app, t0)[0] == [] and w.state == JobState.WAITING
    tokens = {j.id: j.info() for j in a[:2]}
    got, _ = claim(app, t0 + 1, outcomes=[Outcome(a[0].id, app.backend.job_record(a[0].id).token, "ok")])
    assert got == [w.id] and tokens


def test_resource_limit_1_keeps_the_lock_of_one_job_at_a_time(app, t0):
    one = app.task(name="one", resource="db")(lambda i: i)
    a = [one.delay(i) for i in range(2)]
    assert claim(app, t0)[0] == [a[0].id]
    assert a[1].state == JobState.SKIPPED


def test_a_paused_queue_keeps_its_jobs_and_gives_none_until_resumed(app, t0):
    t = app.task(name="t")(lambda i: i)
    app.control.pause_queue("default")
    job = t.delay(1)  # still accepted
    assert job.state == JobState.QUEUED
    assert claim(app, t0)[0] == []
    other = app.task(name="o", queue="other")(lambda: None).delay()
    assert claim(app, t0, queues=("default", "other"))[0] == [other.id]  # other queues are served
    rows = {q.name: q for q in app.control.queues()}
    assert rows["default"].paused and rows["default"].depth == 1 and not rows["other"].paused
    assert app.stats().queues["default"].paused
    app.control.resume_queue("default")
    assert claim(app, t0)[0] == [job.id]


def test_a_queued_job_past_its_expiry_expires_at_claim_and_frees_its_unique_key(app, t0):
    t = app.task(name="t", expires=5, unique=True)(lambda i: i)
    job = t.delay(1)
    assert claim(app, t0 + 10_000)[0] == []
    assert job.state == JobState.EXPIRED
    assert app.stats().tasks["t"].counters["expired"] == 1
    assert [i.id for i in app.control.list_jobs("expired")] == [job.id]
    assert t.delay(1).id != job.id  # the unique key is free again


def test_the_flow_pass_expires_scheduled_and_held_jobs(app, t0):
    t = app.task(name="t", rate_limit=(1, 60.0))(lambda i: i)
    deadline = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=30)
    scheduled = t.apply_async((1,), delay=3600, expires=deadline)
    running, held = t.delay(2), t.apply_async((3,), expires=dt.timedelta(seconds=20))
    assert claim(app, t0)[0] == [running.id]
    assert held.state == JobState.WAITING
    assert flow_pass(app, t0 + 21_000)[1] == 1
    assert held.state == JobState.EXPIRED
    assert app.backend.held_counts(["default"]) == {"default": 0}
    assert flow_pass(app, t0 + 31_000)[1] == 1
    assert scheduled.state == JobState.EXPIRED
    assert app.backend.client.zcard(app.backend.keys.schedule) == 0


def test_the_scheduler_tick_runs_the_flow_pass_and_sleeps_until_the_next_start(app, t0):
    limited = app.task(name="limited", rate_limit=(10, 1.0), rate_burst=1)(lambda i: i)
    jobs = [limited.delay(i) for i in range(3)]
    claim(app, t0)
    sched = Scheduler(app, reaper=False)
    sleep = sched.tick(t0 + 100)
    assert jobs[1].state == JobState.QUEUED and 0 < sleep <= 0.1


def test_cancelling_a_held_job_takes_it_out_of_its_limiter(app, t0):
    limited = app.task(name="limited", rate_limit=(1, 60.0))(lambda i: i)
    jobs = [limited.delay(i) for i in range(2)]
    claim(app, t0)
    assert app.control.cancel(jobs[1].id) == "cancelled"
    assert app.backend.held_counts(["default"]) == {"default": 0}


def test_requeuing_an_expired_job_drops_its_expiry_and_runs_it(app, t0):
    t = app.task(name="t", expires=1, concurrency=2)(lambda i: i)
    job = t.delay(1)
    assert claim(app, t0 + 5000)[0] == [] and job.state == JobState.EXPIRED
    assert app.control.requeue(job.id) == "expired"
    assert claim(app, t0 + 6000)[0] == [job.id]
    assert app.backend.client.scard(app.backend.keys.slots("default", "c:t")) == 1  # its limits stay


def past_expiry(app):
    """A server time, and an expiry 10 s before it."""
    now = app.backend.server_time_ms()
    return now, dt.datetime.fromtimestamp((now - 10_000) / 1000, dt.UTC)


@pytest.mark.parametrize(("state", "how"), [("failed", "requeue"), ("failed", "requeue_failed"),
                                            ("failed", "unstall"), ("cancelled", "requeue")])
def test_requeuing_a_finished_job_whose_expiry_passed_drops_it_and_runs_it(app, state, how):
    """An operator's requeue (or unstall) of a failed or cancelled job means
    run it, as for an expired one: an expiry that passed while it sat
    finished goes, so neither its claim nor the flow pass ends it expired.
    Its limits stay."""
    t = app.task(name="t", concurrency=2)(lambda i: i)
    now, expires = past_expiry(app)
    job = t.apply_async((1,), expires=expires)
    if state == "failed":
        got, tokens = claim(app, now - 20_000)  # before its expiry: it runs, and fails
        assert got == [job.id]
        claim(app, now - 19_000, count=0,
              outcomes=[Outcome(job.id, tokens[job.id], "fail", error_entry(ValueError("x"), 1), ttl_ms=60_000)])
    else:
        assert app.control.cancel(job.id) == "cancelled"
    assert job.state == state
    if how == "requeue":
        app.control.requeue(job.id)
    elif how == "requeue_failed":
        assert app.control.requeue_failed() == 1
    else:
        app.control.stall(job.id)
        app.control.unstall(job.id)
    assert job.state == JobState.QUEUED
    assert flow_pass(app, now + 1000)[1] == 0  # the flow pass does not expire it
    assert claim(app, now + 1000)[0] == [job.id]  # nor the claim: it runs
    assert app.backend.client.scard(app.backend.keys.slots("default", "c:t")) == 1  # its limits stay


def test_requeuing_a_failed_job_keeps_an_expiry_still_ahead(app):
    t = app.task(name="t")(lambda i: i)
    now = app.backend.server_time_ms()
    job = t.apply_async((1,), expires=dt.datetime.fromtimestamp((now + 60_000) / 1000, dt.UTC))
    got, tokens = claim(app, now)
    claim(app, now + 1, count=0,
          outcomes=[Outcome(job.id, tokens[job.id], "fail", error_entry(ValueError("x"), 1), ttl_ms=60_000)])
    assert job.state == JobState.FAILED
    app.control.requeue(job.id)
    assert claim(app, now + 61_000)[0] == [] and job.state == JobState.EXPIRED  # not started by then


def test_purging_a_queue_deletes_the_jobs_its_limits_hold_back(app, t0):
    limited = app.task(name="limited", rate_limit=(1, 60.0))(lambda i: i)
    other = app.task(name="other")(lambda i: i)
    jobs = [limited.apply_async((i,), unique=True, expires=3600) for i in range(4)]
    kept = other.apply_async((0,), queue="elsewhere")
    started, _ = claim(app, t0)
    assert started == [jobs[0].id]
    assert app.backend.held_counts(["default"]) == {"default": 3}
    assert app.control.purge_queue("default") == 3
    assert app.backend.held_counts(["default"]) == {"default": 0}
    for job in jobs[1:]:
        with pytest.raises(JobNotFound):
            _ = job.state
    b = app.backend
    assert not list(b.client.scan_iter(match=b.keys.scan_pattern("fh:"))), "no limiter list left"
    assert b.client.zcard(b.keys.parked("default")) == 0
    assert set(b.client.zrange(b.keys.expiring("default"), 0, -1)) <= {jobs[0].id.encode()}
    assert not [k for k in b.client.scan_iter(match=b.keys.scan_pattern("u:")) if b.client.get(k) != jobs[0].id.encode()]
    assert flow_pass(app, t0 + 120_000)[:2] == (0, 0)  # nothing comes back later
    assert claim(app, t0 + 120_000)[0] == []
    assert kept.state == JobState.QUEUED
