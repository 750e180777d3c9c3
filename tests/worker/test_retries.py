"""Retries, driven one step at a time by an in-process consumer: the backoff
schedule recorded in each job, ``retry_on``/``dont_retry_on``, ``Retry``,
and where each flag comes from (per call > settings > decorator > defaults).
"""

from __future__ import annotations

import datetime as dt
import random
import typing

import pytest

from taskq import JobState, Requeue, Retry, TaskOptions
from taskq.worker.outcome import error_entry
from tests.apps.control import build, consumer, run_until, stop

FINAL = (JobState.SUCCEEDED, JobState.FAILED)


@pytest.fixture
def make(redis_url, namespace):
    apps = []

    def factory(**settings):
        app = build(redis_url, namespace, **settings)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.backend.delete_namespace()
        app.close()


@pytest.fixture
def capp(make):
    return make()


@pytest.fixture
def worker(capp):
    c = consumer(capp)
    yield c
    stop(c)


def due_ms(job) -> int:
    return round(job.info().due_at * 1000)


def run_to_end(app, job, queues=("default",), timeout=20.0):
    """Run ``job`` to its end, retries included (all immediate)."""
    c = consumer(app, "w-" + job.id, queues=queues)
    try:
        run_until(c, lambda: job.state in FINAL, timeout, what=f"{job} to finish")
    finally:
        stop(c)
    return job.info()


# ---------------------------------------------------------------- backoff


def test_retries_follow_the_backoff_schedule_then_fail_with_the_full_history(capp, worker):
    """retry=4, interval 10 s, backoff x2, capped at 25 s: 10, 20, 25, 25, then failed."""
    b = capp.backend
    job = capp.tasks["backoff"].delay()
    for attempt, expected in enumerate([10_000, 20_000, 25_000, 25_000], start=1):
        before = b.server_time_ms()
        run_until(worker, lambda: job.state == JobState.SCHEDULED, what=f"attempt {attempt} to fail")
        after = b.server_time_ms()
        info = job.info()
        assert info.attempts == attempt
        due = due_ms(job)
        assert before + expected <= due <= after + expected, (attempt, due - before, expected)
        assert b.promote(100, now_ms=due - 1)[0] == 0
        assert b.promote(100, now_ms=due)[0] == 1
    run_until(worker, lambda: job.state == JobState.FAILED, what="last attempt")
    info = job.info()
    assert info.attempts == 5
    assert [e["attempt"] for e in info.errors] == [1, 2, 3, 4, 5]
    assert [e["message"] for e in info.errors] == [f"attempt {i}" for i in range(1, 6)]
    assert {e["type"] for e in info.errors} == {"RuntimeError"}
    assert b.task_counters()["backoff|retried"] == 4
    assert b.task_counters()["backoff|failed"] == 1


def test_jitter_spreads_the_delay_within_its_bounds(capp, worker):
    b = capp.backend
    jobs = [capp.tasks["flaky"].apply_async(retry=1, retry_interval=10, retry_jitter=0.5) for _ in range(12)]
    before = b.server_time_ms()
    run_until(worker, lambda: all(j.state == JobState.SCHEDULED for j in jobs), what="first attempts")
    after = b.server_time_ms()
    delays = [due_ms(j) for j in jobs]
    assert all(before + 5_000 <= d <= after + 15_000 for d in delays), [d - before for d in delays]
    assert len(set(delays)) > 1


def test_retry_delay_formula_bounds():
    o = TaskOptions(retry_interval=10, retry_backoff=3, retry_max_interval=100, retry_jitter=0.2)
    assert o.retry_delay(1, 0.5) == 10
    assert o.retry_delay(2, 0.5) == 30
    assert o.retry_delay(3, 0.5) == 90
    assert o.retry_delay(4, 0.5) == 100  # capped
    assert o.retry_delay(1, 0.0) == pytest.approx(8)
    assert o.retry_delay(1, 1.0) == pytest.approx(12)


def test_retry_delay_stays_at_its_cap_after_many_attempts():
    """"Retry for ever, backoff x2, at most hourly": from attempt 1,026 on
    2.0 ** (attempt - 1) overflowed a float and retry_delay raised OverflowError."""
    o = TaskOptions(retry=100_000, retry_interval=1, retry_backoff=2, retry_max_interval=3600)
    assert o.retry_delay(1025) == 3600
    assert o.retry_delay(1026) == 3600
    assert o.retry_delay(50_000) == 3600
    assert TaskOptions(retry_interval=0, retry_backoff=10).retry_delay(400) == 0


def test_retry_delay_without_a_cap_stays_a_delay_the_server_can_hold():
    """retry_max_interval=inf ("no cap"): after ~50 doublings the delay in ms
    passed 2**63 and wrapped around on the server, so the retry ran at once."""
    o = TaskOptions(retry=1_000, retry_interval=10, retry_backoff=2, retry_max_interval=float("inf"))
    assert o.retry_delay(60) == dt.timedelta.max.total_seconds()
    assert o.retry_delay(2_000) == dt.timedelta.max.total_seconds()


def test_a_long_retrying_job_is_scheduled_at_the_cap_not_crashing_the_worker(capp, worker):
    forever = capp.task(name="forever", retry=100_000, retry_interval=1, retry_backoff=2,
                        retry_max_interval=60)(lambda: 1 / 0)
    job = forever.delay()
    capp.backend.client.hset(capp.backend.keys.job(job.id), "a", 1_100)  # weeks of hourly retries behind it
    before = capp.backend.server_time_ms()
    run_until(worker, lambda: job.state == JobState.SCHEDULED, what="the attempt to fail")
    after = capp.backend.server_time_ms()
    assert job.info().attempts == 1_101
    assert before + 60_000 <= due_ms(job) <= after + 60_000


# ---------------------------------------------------------------- what is retried


@pytest.mark.parametrize(
    ("flags", "exc_type", "attempts"),
    [
        ({"retry": 2}, "ValueError", 3),
        ({"retry": 2, "retry_on": (KeyError,)}, "ValueError", 1),
        ({"retry": 2, "retry_on": ("KeyError",)}, "KeyError", 3),
        ({"retry": 2, "retry_on": (LookupError,)}, "KeyError", 3),
        ({"retry": 2, "dont_retry_on": (ValueError,)}, "ValueError", 1),
        ({"retry": 2, "dont_retry_on": "builtins.ValueError"}, "ValueError", 1),
        ({"retry": 2, "retry_on": Exception, "dont_retry_on": ("KeyError",)}, "TypeError", 3),
        # not Exceptions: a failure of the job (not retried unless listed), never the worker's end
        ({"retry": 2}, "SystemExit", 1),
        ({"retry": 2}, "KeyboardInterrupt", 1),
        ({"retry": 2, "retry_on": (SystemExit,)}, "SystemExit", 3),
    ],
)
def test_retry_on_and_dont_retry_on_per_call(capp, flags, exc_type, attempts):
    job = capp.tasks["flaky"].apply_async((exc_type,), **flags)
    info = run_to_end(capp, job)
    assert info.state == JobState.FAILED
    assert info.attempts == attempts
    assert [e["attempt"] for e in info.errors] == list(range(1, attempts + 1))
    assert {e["type"] for e in info.errors} == {exc_type}


def test_retry_on_from_the_decorator_and_from_settings(make):
    app = make(task_flags={"flaky": {"retry": 3, "dont_retry_on": ["TypeError"]}})
    assert run_to_end(app, app.tasks["flaky"].delay("TypeError")).attempts == 1
    assert run_to_end(app, app.tasks["flaky"].delay("ValueError")).attempts == 4

    @app.task(name="strict", retry=2, retry_interval=0, retry_on=(KeyError,))
    def strict(kind: str) -> None:
        raise {"k": KeyError, "v": ValueError}[kind]("x")

    assert run_to_end(app, strict.delay("v")).attempts == 1
    assert run_to_end(app, strict.delay("k")).attempts == 3


def test_raise_retry_schedules_at_its_countdown(capp, worker):
    b = capp.backend
    job = capp.tasks["retry_later"].delay(7.5)
    before = b.server_time_ms()
    run_until(worker, lambda: job.state == JobState.SCHEDULED)
    after = b.server_time_ms()
    assert before + 7_500 <= due_ms(job) <= after + 7_500
    assert job.info().errors[0]["type"] == "Retry"
    b.promote(10, now_ms=due_ms(job))
    run_until(worker, lambda: job.state == JobState.SUCCEEDED)
    assert job.info().attempts == 2


def test_raise_retry_and_requeue_with_a_timedelta_countdown(capp, worker):
    """Durations are seconds or a timedelta everywhere; Retry(countdown=timedelta(...))
    raised TypeError out of the executor (int(timedelta * 1000)), taking the
    child down with the outcomes of its batch."""
    b = capp.backend

    @capp.task(name="retry_td", retry=1)
    def retry() -> None:
        raise Retry(countdown=dt.timedelta(seconds=7))

    @capp.task(name="requeue_td")
    def requeue() -> None:
        raise Requeue(countdown=dt.timedelta(seconds=9))

    job, job2 = retry.delay(), requeue.delay()
    before = b.server_time_ms()
    run_until(worker, lambda: job.state == JobState.SCHEDULED and job2.state == JobState.SCHEDULED)
    after = b.server_time_ms()
    assert before + 7_000 <= due_ms(job) <= after + 7_000
    assert before + 9_000 <= due_ms(job2) <= after + 9_000


def test_retry_and_requeue_countdowns_are_typed_as_seconds_or_a_timedelta():
    """Type checkers accept the timedelta countdown the worker takes."""
    for cls in (Retry, Requeue):
        hint = typing.get_type_hints(cls.__init__)["countdown"]
        assert set(typing.get_args(hint)) == {float, dt.timedelta, type(None)}, cls


# 1e17 s: its due time, in ms, wrapped around on the server and the retry ran at once
@pytest.mark.parametrize("countdown", [float("nan"), float("inf"), "soon", 1e17])
def test_raise_retry_with_a_bad_countdown_fails_the_job_and_the_worker_goes_on(capp, worker, countdown):
    @capp.task(name="bad_countdown", retry=3)
    def bad() -> None:
        raise Retry(countdown=countdown)

    job = bad.delay()
    run_until(worker, lambda: job.state == JobState.FAILED, what="the job to fail")
    assert "countdown" in job.info().errors[-1]["message"]
    after = capp.tasks["noop"].delay()
    run_until(worker, lambda: after.state == JobState.SUCCEEDED, what="the next job")


def test_raise_retry_with_zero_countdown_requeues_at_once(capp, worker):
    job = capp.tasks["retry_later"].delay(0)
    run_until(worker, lambda: job.state == JobState.SUCCEEDED)
    assert job.info().attempts == 2


def test_raise_retry_after_the_last_attempt_fails_the_job(capp):
    info = run_to_end(capp, capp.tasks["retry_later"].apply_async((5,), retry=0))
    assert info.state == JobState.FAILED and info.attempts == 1
    assert info.errors[-1]["type"] == "Retry"


# ---------------------------------------------------------------- precedence


@pytest.mark.parametrize(
    ("settings", "call", "attempts"),
    [
        ({}, {}, 2),  # decorator: retry=1
        ({"task_defaults": {"retry": 5}}, {}, 2),  # the decorator beats task_defaults
        ({"task_flags": {"flaky": {"retry": 2}}}, {}, 3),  # settings beat the decorator
        ({"task_flags": {"flaky": {"retry": 2}}}, {"retry": 3}, 4),  # per call beats settings
        ({}, {"retry": 0}, 1),  # per call beats the decorator
    ],
)
def test_retry_precedence_per_call_then_settings_then_decorator(make, settings, call, attempts):
    app = make(**settings)
    job = app.tasks["flaky"].apply_async(**call)
    assert run_to_end(app, job).attempts == attempts


@pytest.mark.parametrize(
    ("settings", "call", "delay_ms"),
    [
        ({}, {}, 10_000),  # decorator of "backoff": retry_interval=10
        ({"task_flags": {"backoff": {"retry_interval": 20}}}, {}, 20_000),
        ({"task_flags": {"backoff": {"retry_interval": 20}}}, {"retry_interval": 3}, 3_000),
        ({"task_defaults": {"retry_interval": 50}}, {}, 10_000),
    ],
)
def test_retry_interval_precedence(make, settings, call, delay_ms):
    app = make(**settings)
    job = app.tasks["backoff"].apply_async(**call)
    c = consumer(app)
    before = app.backend.server_time_ms()
    run_until(c, lambda: job.state == JobState.SCHEDULED)
    after = app.backend.server_time_ms()
    stop(c)
    assert before + delay_ms <= due_ms(job) <= after + delay_ms


def test_task_defaults_apply_to_tasks_without_the_flag(make):
    app = make(task_defaults={"retry": 2, "retry_interval": 0})
    assert run_to_end(app, app.tasks["fail"].delay()).attempts == 3
    plain = make()
    assert run_to_end(plain, plain.tasks["fail"].delay()).attempts == 1


def test_queue_priority_and_delay_from_settings_and_per_call(make):
    app = make(task_flags={"noop": {"queue": "bulk", "priority": "high", "delay": 5}})
    b = app.backend
    t0 = b.server_time_ms()
    job = app.tasks["noop"].delay()
    t1 = b.server_time_ms()
    info = job.info()
    assert (info.queue, info.priority, info.state) == ("bulk", 10, JobState.SCHEDULED)
    assert t0 + 5_000 <= due_ms(job) <= t1 + 5_000
    job2 = app.tasks["noop"].apply_async(queue="urgent", priority=-5, delay=0)
    info2 = job2.info()
    assert (info2.queue, info2.priority, info2.state) == ("urgent", -5, JobState.QUEUED)
    plain = make().tasks["noop"].delay().info()
    assert (plain.queue, plain.priority) == ("default", 0)


def test_timeout_from_settings_and_per_call(make):
    app = make(task_flags={"sleepy": {"timeout": 0.2}})
    info = run_to_end(app, app.tasks["sleepy"].delay(3))
    assert info.state == JobState.FAILED
    assert info.errors[-1]["type"] == "TaskTimeout"
    assert info.errors[-1]["kind"] == "timeout"
    b = app.backend
    assert b.task_counters()["sleepy|timed_out"] == 1
    info = run_to_end(app, app.tasks["sleepy"].apply_async((0.4,), timeout=10))
    assert info.state == JobState.SUCCEEDED


def test_per_call_retry_is_stored_with_the_job_for_reapers(capp):
    """A per-call retry becomes the job's own max attempts, so a reaper that
    does not know the call still stops at the right attempt."""
    b = capp.backend
    job = capp.tasks["noop"].apply_async(retry=2, max_lost=0)  # each loss uses an attempt
    assert b.job_hash(job.id)["m"] == b"3"
    lost = error_entry(None, 0, kind="lost", exc_type="WorkerLost", message="worker lost")
    for attempt in (1, 2, 3):
        c = consumer(capp, f"w{attempt}")
        run_until(c, lambda: job.state == JobState.ACTIVE)  # claimed, never run: the worker "dies"
        outcome = b.reap_worker(f"w{attempt}", expected_hb=None, caps=(100, 10, 1000), lost_blob=lost)
        assert outcome == {job.id: "queued" if attempt < 3 else "failed"}
    assert job.info().attempts == 3


def test_a_job_killed_at_its_hard_timeout_retries_with_jitter(capp, monkeypatch):
    """The supervisor's retry of a job it killed took the middle of the
    jitter range every time: jobs killed together all came back together."""
    from types import SimpleNamespace

    from taskq.worker.supervisor import Supervisor

    slow = capp.task(name="slow", retry=2, retry_interval=100, retry_jitter=0.5, timeout=1)(lambda: None)
    b = capp.backend
    b.register_tasks({"slow": 3})  # as a worker does at start
    job = slow.delay()
    s = capp.settings
    b.settle_claim("w1", 1, [], ["default"], [], (s.failed_max, s.done_max, s.error_history, 1000))
    monkeypatch.setattr(random, "random", lambda: 0.0)  # the low end of the range: 50 s
    before = b.server_time_ms()
    Supervisor(capp)._reap_consumer(SimpleNamespace(index=0), "w1", job.id, "timeout")
    after = b.server_time_ms()
    assert job.state == JobState.SCHEDULED
    assert before + 50_000 <= due_ms(job) <= after + 50_000
