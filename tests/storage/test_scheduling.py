"""Delayed jobs, ETAs and the schedule (enqueue.lua, promote.lua), and the
single-step retry/reap transitions (settle_claim.lua, reap_worker.lua).

Time is an input: due times are checked against explicit ``now_ms``.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest

from taskq import ConfigurationError, JobState, enqueue
from taskq.enqueue import build_job
from taskq.worker.outcome import Outcome, error_entry
from taskq.worker.scheduler import Reaper, Scheduler

FAR = 10**13  # a now_ms after every due time


def due_ms(job) -> int:
    return round(job.info().due_at * 1000)


def claim(app, worker="w1", count=1, outcomes=(), now_ms=""):
    s = app.settings
    caps = (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))
    return app.backend.settle_claim(worker, count, [o.fields() for o in outcomes], ["default"], [], caps,
                                    now_ms=now_ms)


# ---------------------------------------------------------------- delays and ETAs


def test_delayed_job_is_scheduled_and_promoted_only_at_its_due_time(capp):
    b = capp.backend
    before = b.server_time_ms()
    job = capp.tasks["noop"].apply_async(delay=30)
    after = b.server_time_ms()
    assert job.created and job.state == JobState.SCHEDULED
    due = due_ms(job)
    assert before + 30_000 <= due <= after + 30_000
    assert b.ready_ids("default", 10) == []

    assert b.promote(100, now_ms=due - 1)[0] == 0
    assert job.state == JobState.SCHEDULED
    moved, next_due, now = b.promote(100, now_ms=due)
    assert (moved, next_due, now) == (1, -1, due)
    assert job.state == JobState.QUEUED
    assert job.info().due_at is None
    assert b.ready_ids("default", 10) == [job.id]


def test_delay_accepts_a_timedelta_and_comes_from_the_task_or_the_call(capp):
    later = capp.task(name="later", delay=dt.timedelta(seconds=5))(lambda: None)
    b = capp.backend
    t0 = b.server_time_ms()
    by_task = later.delay()
    by_call = later.apply_async(delay=dt.timedelta(minutes=2))
    at_once = later.apply_async(delay=0)
    t1 = b.server_time_ms()
    assert t0 + 5_000 <= due_ms(by_task) <= t1 + 5_000
    assert t0 + 120_000 <= due_ms(by_call) <= t1 + 120_000
    assert at_once.state == JobState.QUEUED
    assert b.promote(100, now_ms=t1 + 5_000)[0] == 1
    assert by_task.state == JobState.QUEUED and by_call.state == JobState.SCHEDULED


def test_eta_in_the_past_is_queued_at_once_and_a_future_eta_is_its_due_time(capp):
    noop = capp.tasks["noop"]
    past = noop.apply_async(eta=dt.datetime.now(dt.UTC) - dt.timedelta(hours=1))
    assert past.state == JobState.QUEUED
    eta = dt.datetime.now(dt.timezone(dt.timedelta(hours=5))) + dt.timedelta(minutes=10)
    future = noop.apply_async(eta=eta)
    assert future.state == JobState.SCHEDULED
    assert due_ms(future) == int(eta.timestamp() * 1000)
    # the later of delay and eta wins
    before = capp.backend.server_time_ms()
    both = noop.apply_async(eta=eta, delay=3600)
    after = capp.backend.server_time_ms()
    assert before + 3_600_000 <= due_ms(both) <= after + 3_600_000
    sooner = noop.apply_async(eta=eta, delay=1)
    assert due_ms(sooner) == int(eta.timestamp() * 1000)


def test_the_longest_delay_is_scheduled_in_the_far_future(capp):
    job = capp.tasks["noop"].apply_async(delay=dt.timedelta.max)
    assert job.state == JobState.SCHEDULED
    assert due_ms(job) > FAR
    assert capp.backend.promote(100, now_ms=FAR)[0] == 0
    assert job.state == JobState.SCHEDULED


def test_naive_eta_is_rejected_before_anything_is_written(capp):
    with pytest.raises(ConfigurationError, match="timezone-aware"):
        capp.tasks["noop"].apply_async(eta=dt.datetime.now() + dt.timedelta(minutes=1))
    with pytest.raises(ConfigurationError, match="eta must be"):
        capp.tasks["noop"].apply_async(eta=1234567)  # type: ignore[arg-type]
    assert capp.backend.count_keys() == 0


def test_due_time_is_the_enqueue_scripts_now_plus_the_delay(capp):
    """The script, not the producer, computes ``due``: a producer whose clock
    is off cannot move a job's due time."""
    b = capp.backend
    opts = capp.options_for("noop").merged({"delay": 10})
    fields = build_job(capp.settings, "noop", (), {}, opts, {"delay": 10}, job_id="a")
    (jid, created, state), = b.enqueue([fields], now_ms=1_000_000)
    assert (jid, created, state) == ("a", True, "scheduled")
    assert due_ms(capp.job("a")) == 1_010_000
    assert capp.job("a").info().created_at == 1_000.0

    server_before = b.server_time_ms()
    fields = build_job(capp.settings, "noop", (), {}, opts, {"delay": 10}, job_id="b")
    b.enqueue([fields])  # now_ms "" = the server's clock
    server_after = b.server_time_ms()
    assert server_before + 10_000 <= due_ms(capp.job("b")) <= server_after + 10_000


# ---------------------------------------------------------------- promote


def test_promote_moves_at_most_limit_per_call_and_drains_a_backlog(capp):
    b = capp.backend
    n = 20_000
    jobs = capp.tasks["noop"].map(range(n), delay=60)
    assert len(jobs) == n and all(j.created for j in jobs[:10])
    assert b.zcard(b.keys.schedule) == n
    calls = []
    while True:
        moved, next_due, _ = b.promote(1_500, now_ms=FAR)
        calls.append(moved)
        if moved == 0:
            break
        assert moved <= 1_500
    assert sum(calls) == n
    assert len(calls) == -(-n // 1_500) + 1
    assert next_due == -1
    ready = b.client.lrange(b.keys.ready("default", 0), 0, -1)
    assert len(ready) == n == len(set(ready))


def test_concurrent_promoters_move_every_job_exactly_once(capp, make_app):
    n = 20_000
    capp.tasks["noop"].map(range(n), delay=60)
    apps = [make_app() for _ in range(3)]
    totals = [0, 0, 0]
    barrier = threading.Barrier(3)
    errors = []

    def promoter(i: int) -> None:
        try:
            barrier.wait()
            while True:
                moved, _, _ = apps[i].backend.promote(300, now_ms=FAR)
                if moved == 0 and apps[i].backend.zcard(apps[i].backend.keys.schedule) == 0:
                    return
                totals[i] += moved
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=promoter, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert sum(totals) == n
    b = capp.backend
    assert b.client.llen(b.keys.ready("default", 0)) == n
    assert len(set(b.client.lrange(b.keys.ready("default", 0), 0, -1))) == n
    assert b.zcard(b.keys.schedule) == 0


def test_jobs_due_at_the_same_time_are_promoted_in_the_order_they_were_enqueued(capp, monkeypatch):
    """FIFO within a level holds for delayed jobs too: a map() with a delay
    gives its jobs one due time, and promotion took them in id order, which
    was not the order they were made in (job 16 ran before job 2)."""
    monkeypatch.setattr(enqueue, "new_job_id", enqueue._JobIds())  # a fresh counter, as in a new process
    jobs = capp.tasks["noop"].map(range(300), delay=60)
    capp.backend.promote(1000, now_ms=FAR)
    _, rows = claim(capp, count=300)
    assert [r[0].decode() for r in rows] == [j.id for j in jobs]


def test_a_delayed_job_enqueued_at_the_front_goes_to_the_head_of_its_queue_when_due(capp):
    """front=True with a delay: promotion pushed it behind every job queued."""
    noop = capp.tasks["noop"]
    queued = [noop.delay(i) for i in range(3)]
    urgent = noop.apply_async((99,), front=True, delay=60)
    later = noop.apply_async((100,), delay=60)
    capp.backend.promote(100, now_ms=FAR)
    assert capp.backend.client.hget(capp.backend.keys.job(urgent.id), "fr") is None
    _, rows = claim(capp, count=10)
    assert [r[0].decode() for r in rows] == [urgent.id] + [j.id for j in queued] + [later.id]


def test_a_front_job_that_left_the_schedule_another_way_is_not_sent_to_the_front_later(capp):
    b = capp.backend
    b.register_tasks({"flaky": 2})
    flaky = capp.tasks["flaky"]
    job = flaky.apply_async(front=True, delay=60)
    job.requeue()  # out of the schedule by hand; it fails and is retried later
    _, rows = claim(capp)
    retry = Outcome(job.id, int(rows[0][1]), "retry", error_entry(ValueError("x"), 1), delay_ms=1_000)
    claim(capp, count=0, outcomes=[retry])
    first = capp.tasks["noop"].delay()
    b.promote(100, now_ms=FAR)
    _, rows = claim(capp, count=10)
    assert [r[0].decode() for r in rows] == [first.id, job.id]


def test_promote_ignores_a_schedule_entry_whose_job_moved_on(capp):
    b = capp.backend
    job = capp.tasks["noop"].apply_async(delay=30)
    b.client.hset(b.keys.job(job.id), "s", "cancelled")  # e.g. a stale entry
    assert b.promote(100, now_ms=FAR)[0] == 0
    assert b.zcard(b.keys.schedule) == 0
    assert b.ready_ids("default", 10) == []


# ---------------------------------------------------------------- retry and reap are single steps


def test_a_retry_outcome_reschedules_with_its_error_in_one_script(capp):
    b = capp.backend
    job = capp.tasks["noop"].delay()
    _, rows = claim(capp, now_ms=1_000_000)
    token = int(rows[0][1])
    assert b.client.smembers(b.keys.worker_jobs("w1")) == {job.id.encode()}
    out = Outcome(job.id, token, "retry", error_entry(ValueError("nope"), 1), delay_ms=5_000)
    settled, claimed = claim(capp, count=0, outcomes=[out], now_ms=1_002_000)
    assert settled == [1] and claimed == []
    info = job.info()
    assert info.state == JobState.SCHEDULED
    assert round(info.due_at * 1000) == 1_007_000
    assert [(e["type"], e["message"], e["attempt"]) for e in info.errors] == [("ValueError", "nope", 1)]
    assert info.attempts == 1
    assert b.client.zscore(b.keys.schedule, job.id) == 1_007_000
    assert not b.client.exists(b.keys.worker_jobs("w1"))
    # the worker dying now changes nothing: the job is no longer its
    result = b.reap_worker("w1", expected_hb=None, caps=(100, 10, 1000), lost_blob=b"")
    assert result == {}
    assert job.state == JobState.SCHEDULED


def test_a_worker_dying_before_it_sends_the_outcome_gets_the_job_back_with_the_attempt_counted(capp):
    b = capp.backend
    b.register_tasks({"noop": "3:0"})  # max_lost 0: a loss counts as an attempt
    job = capp.tasks["noop"].delay()
    claim(capp)
    assert job.state == JobState.ACTIVE
    lost = error_entry(None, 0, kind="lost", exc_type="WorkerLost", message="worker lost")
    assert b.reap_worker("w1", expected_hb=None, caps=(100, 10, 1000), lost_blob=lost) == {job.id: "queued"}
    info = job.info()
    assert info.state == JobState.QUEUED and info.attempts == 1
    assert [e["type"] for e in info.errors] == ["WorkerLost"]
    assert b.ready_ids("default", 10) == [job.id]
    # the next claim is attempt 2
    _, rows = claim(capp, worker="w2")
    assert int(rows[0][2]) == 2
    # the entry records the attempt the job was on (the reaper's own entry says 0)
    assert b.reap_worker("w2", expected_hb=None, caps=(100, 10, 1000), lost_blob=lost) == {job.id: "queued"}
    assert [(e["type"], e["attempt"], e["message"]) for e in job.info().errors] == [
        ("WorkerLost", 1, "worker lost"), ("WorkerLost", 2, "worker lost")]


def leased_to_w1(capp):
    """A noop job (2 attempts) leased to worker w1, which beat once: the job
    and that heartbeat's time."""
    b = capp.backend
    b.register_tasks({"noop": "2:0"})  # max_lost 0: a loss counts as an attempt
    job = capp.tasks["noop"].delay()
    claim(capp)
    b.heartbeat("w1", 60_000)
    return job, dict(b.workers())["w1"]


def test_reaper_returns_the_jobs_of_a_worker_whose_heartbeat_stopped(capp):
    """The reaper judges silence on the times it is given, ticking without gaps."""
    b = capp.backend
    job, hb = leased_to_w1(capp)
    reaper = Reaper(capp)
    timeout = reaper.timeout_ms
    assert reaper.tick(hb) == []
    t = hb
    while t + 1_000 < hb + timeout:
        t += 1_000
        assert reaper.tick(t) == []
        assert job.state == JobState.ACTIVE
    assert reaper.tick(hb + timeout) == ["w1"]
    info = job.info()
    assert info.state == JobState.QUEUED and info.attempts == 1
    assert info.errors[-1]["type"] == "WorkerLost"
    assert b.workers() == []


def test_reaper_does_not_reap_after_a_gap_in_its_own_ticks(capp):
    b = capp.backend
    capp.tasks["noop"].delay()
    claim(capp)
    b.heartbeat("w1", 60_000)
    hb = dict(b.workers())["w1"]
    reaper = Reaper(capp)
    reaper.tick(hb)
    assert reaper.tick(hb + 10 * reaper.timeout_ms) == []  # away too long: observations start over
    assert [w for w, _ in b.workers()] == ["w1"]


def test_reaping_goes_on_after_the_servers_clock_went_back(capp):
    """A failover to a server whose clock is an hour behind: the scheduler
    planned its next reap on the old clock and skipped the reaper until the
    new clock caught up, and the dead worker's heartbeat, an hour "in the
    future", never looked old enough. Its job stayed active for that hour."""
    b = capp.backend
    job, hb = leased_to_w1(capp)
    s = Scheduler(capp)
    s.tick(hb)
    timeout = s.reaper.timeout_ms
    back = hb - 3_600_000
    t = back
    while t <= back + timeout + 2_000 and job.state == JobState.ACTIVE:
        s.tick(t)
        t += 500
    assert job.state == JobState.QUEUED
    assert t > back + timeout  # watched for a whole timeout on the new clock first
    assert b.workers() == []
