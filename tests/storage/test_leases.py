"""Leases, fencing and reaping at the storage level: no processes, no sleeps;
time is passed in as ``now_ms``."""

from __future__ import annotations

import time
from typing import Any

import pytest

from taskq import TaskQ, codec, current_job
from taskq.storage.backend import Backend
from taskq.storage.wire import pack
from taskq.worker.executor import ClaimedJob, Executor
from taskq.worker.heartbeat import Heartbeat
from taskq.worker.outcome import Outcome, error_entry
from taskq.worker.scheduler import Reaper, Scheduler

T0 = 1_700_000_000_000  # a fixed "server time" in ms
QUEUES = ["default"]


def settle_caps(app: TaskQ) -> tuple[int, int, int, int]:
    s = app.settings
    return (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))


def reap_caps(app: TaskQ) -> tuple[int, int, int]:
    s = app.settings
    return (s.failed_max, s.error_history, int(s.failed_ttl * 1000))


def claim(app: TaskQ, worker: str, now_ms: int, count: int = 1) -> list[ClaimedJob]:
    _, rows = app.backend.settle_claim(worker, count, [], QUEUES, [], settle_caps(app), now_ms=now_ms)
    return [ClaimedJob(r) for r in rows]


def settle(app: TaskQ, worker: str, outcome: Outcome, now_ms: int) -> int:
    settled, _ = app.backend.settle_claim(worker, 0, [outcome.fields()], QUEUES, [], settle_caps(app),
                                          now_ms=now_ms)
    return settled[0]


def beat(backend: Backend, worker: str, now_ms: int) -> None:
    backend.run("heartbeat", now_ms, worker, 60_000)


def reap(app: TaskQ, worker: str, now_ms: int, expected_hb: int | None = None) -> dict[str, str] | None:
    lost = error_entry(None, 0, kind="lost", exc_type="WorkerLost", message="worker lost (test)")
    return app.backend.reap_worker(worker, expected_hb=expected_hb, caps=reap_caps(app), lost_blob=lost,
                                   now_ms=now_ms)


def snapshot(app: TaskQ, job_id: str, resource: str) -> dict[str, Any]:
    """Everything a settled outcome could change."""
    b, k = app.backend, app.backend.keys
    c = b.client
    return {
        "job": b.job_hash(job_id),
        "lock": c.get(k.lock(resource)),
        "result": c.lrange(k.result(job_id), 0, -1),
        "done": c.zrange(k.done, 0, -1),
        "failed": c.zrange(k.failed, 0, -1),
        "schedule": c.zrange(k.schedule, 0, -1),
        "ready": b.ready_ids("default", 100),
        "stats": b.task_counters(),
        "held": {w: sorted(c.smembers(k.worker_jobs(w))) for w in ("w1", "w2")},
    }


@pytest.fixture
def app(make_app: Any) -> TaskQ:
    app = make_app(heartbeat_timeout=10)

    @app.task(name="token")
    def token() -> int:
        return current_job().fencing_token

    return app


def run_in_process(app: TaskQ, job: ClaimedJob) -> Outcome:
    return Executor(app, app.backend, lambda *_: None).run(job)


# ---------------------------------------------------------------- fencing


@pytest.mark.parametrize("late_kind", ["ok", "fail", "retry", "requeue", "cancel", "release"])
def test_late_outcome_of_a_reaped_worker_is_discarded(app, late_kind):
    job = app.enqueue_call("token", (), {}, {"retry": 3}, resource="res")
    beat(app.backend, "w1", T0)
    (first,) = claim(app, "w1", T0)
    assert first.attempt == 1
    assert app.backend.client.get(app.backend.keys.lock("res")) == job.id.encode()

    assert reap(app, "w1", T0 + 20_000) == {job.id: "requeued"}
    assert app.backend.client.get(app.backend.keys.lock("res")) is None
    (second,) = claim(app, "w2", T0 + 20_100)
    assert second.id == job.id and second.attempt == 1  # the lost run used no attempt
    assert second.token > first.token

    before = snapshot(app, job.id, "res")
    late = Outcome(job.id, first.token, late_kind, codec.dumps("late") if late_kind == "ok" else
                   error_entry(ValueError("late"), 1), ttl_ms=60_000, keep_ms=60_000, duration_ms=5, task="token")
    assert settle(app, "w1", late, T0 + 20_200) == 0
    after = snapshot(app, job.id, "res")
    assert after == before
    assert after["job"]["s"] == b"active" and after["job"]["w"] == b"w2"
    assert after["job"]["k"] == str(second.token).encode()
    assert "res" not in after["job"]
    assert after["lock"] == job.id.encode()

    # Even the current token is refused from a worker that does not hold the lease.
    forged = Outcome(job.id, second.token, late_kind, b"", duration_ms=5, task="token")
    assert settle(app, "w1", forged, T0 + 20_300) == 0
    assert snapshot(app, job.id, "res") == before

    # The lease holder's outcome is recorded.
    ok = Outcome(job.id, second.token, "ok", codec.dumps(7), ttl_ms=60_000, keep_ms=60_000, duration_ms=5,
                 task="token")
    assert settle(app, "w2", ok, T0 + 20_400) == 1
    h = app.backend.job_hash(job.id)
    assert h["s"] == b"succeeded" and codec.loads(h["res"]) == 7
    assert app.backend.client.get(app.backend.keys.lock("res")) is None
    errors = job.info().errors
    assert [e["message"] for e in errors] == ["worker lost (test)"]


@pytest.mark.parametrize("kind", ["ok", "fail", "retry", "requeue", "release"])
def test_an_outcome_sent_again_after_a_lost_reply_is_known_as_recorded(app, kind):
    """The same outcome twice (its first reply lost): the second is answered
    2 (already recorded) and changes nothing; once the job moved on (another
    lease), a late copy is refused as before."""
    job = app.enqueue_call("token", (), {}, {"retry": 3})
    (first,) = claim(app, "w1", T0)
    out = Outcome(job.id, first.token, kind, error_entry(ValueError("x"), 1) if kind in ("fail", "retry") else b"",
                  ttl_ms=60_000, duration_ms=5, task="token")
    assert settle(app, "w1", out, T0 + 10) == 1
    before = snapshot(app, job.id, "res")
    assert settle(app, "w1", out, T0 + 20) == 2
    assert snapshot(app, job.id, "res") == before
    if kind in ("retry", "requeue", "release"):  # back in the queue: the next lease bumps the token
        (second,) = claim(app, "w1", T0 + 30)
        assert second.token > first.token
        assert settle(app, "w1", out, T0 + 40) == 0


def test_fencing_token_seen_by_the_task_increases_on_every_claim(app):
    job = app.enqueue_call("token", (), {}, {"retry": 5})
    tokens = []
    for i, worker in enumerate(["w1", "w2", "w3"]):
        now = T0 + i * 30_000
        beat(app.backend, worker, now)
        (claimed,) = claim(app, worker, now)
        out = run_in_process(app, claimed)
        assert out.kind == "ok"
        assert out.value == claimed.token  # what current_job().fencing_token said inside the task
        tokens.append(out.value)
        if worker != "w3":
            assert reap(app, worker, now + 20_000) == {job.id: "requeued"}
        else:
            assert settle(app, worker, out, now + 1) == 1
    assert tokens == sorted(set(tokens))
    assert job.state.value == "succeeded"
    assert (job.info().attempts, job.info().lost_count) == (1, 2)  # losses use no attempt


def test_reaping_a_worker_bumps_the_token_of_every_job_it_held(app):
    jobs = [app.enqueue_call("token", (), {}, {"retry": 1}) for _ in range(3)]
    beat(app.backend, "w1", T0)
    held = claim(app, "w1", T0, count=3)
    assert {j.id for j in held} == {j.id for j in jobs}
    assert set(reap(app, "w1", T0 + 20_000).values()) == {"requeued"}
    for j in held:
        assert int(app.backend.job_hash(j.id)["k"]) > j.token
    assert not app.backend.workers()
    assert not app.backend.client.exists(app.backend.keys.worker_jobs("w1"))


# ---------------------------------------------------------------- reaper


def held_job(app: TaskQ, worker: str, now_ms: int) -> str:
    job = app.enqueue_call("token", (), {}, {"retry": 3})
    beat(app.backend, worker, now_ms)
    (claimed,) = claim(app, worker, now_ms)
    assert claimed.id == job.id
    return job.id


def test_reaper_needs_a_full_timeout_of_its_own_observation(app):
    job_id = held_job(app, "w1", T0)
    reaper = Reaper(app)
    assert reaper.timeout_ms == 10_000
    # The heartbeat is already 30 s old when this reaper first looks: not enough.
    start = T0 + 30_000
    for t in range(start, start + 10_000, 1000):
        assert reaper.tick(t) == [], t
    assert app.backend.job_hash(job_id)["s"] == b"active"
    assert reaper.tick(start + 10_000) == ["w1"]
    h = app.backend.job_hash(job_id)
    assert h["s"] == b"queued" and h["a"] == b"0" and h["lc"] == b"1"  # back, its attempt refunded
    assert not app.backend.workers()


def test_reaper_reaps_a_silent_worker_after_heartbeat_timeout(app):
    job_id = held_job(app, "w1", T0)
    reaper = Reaper(app)
    reaped_at = None
    for t in range(T0, T0 + 20_000, 1000):
        if reaper.tick(t):
            reaped_at = t
            break
    assert reaped_at == T0 + 10_000
    assert app.backend.job_hash(job_id)["s"] == b"queued"


def test_a_worker_reaped_while_alive_keeps_its_host_and_pid_on_its_next_beat(app):
    """A reap deletes the worker's hash; a worker still alive (it was paused)
    re-created it with only its heartbeat, and listings lost its host and pid."""
    hb = Heartbeat(app.backend, "w1", interval=60, info_ttl_ms=60_000, info={"host": "h1", "pid": "42"},
                   on_cancel=lambda cancels: None)
    hb.beat()
    held_job(app, "w1", T0)
    assert reap(app, "w1", T0 + 60_000) is not None
    assert not app.backend.workers()
    hb.beat()
    ((details, _),) = app.backend.worker_details(["w1"])
    assert details[b"host"] == b"h1" and details[b"pid"] == b"42", details


def test_a_gap_in_the_reapers_passes_counts_as_half_a_timeout(app):
    """A server pause (or a reaper that was away) must not reap everyone."""
    job_id = held_job(app, "w1", T0)
    reaper = Reaper(app)
    assert reaper.tick(T0 + 1000) == []
    # 60 s later (the server was frozen, the worker could not beat)
    t = T0 + 61_000
    assert reaper.tick(t) == []
    assert app.backend.job_hash(job_id)["s"] == b"active"
    # The gap counts as half a timeout of watch: the worker had the other half to beat.
    for step in range(1, 5):
        assert reaper.tick(t + step * 1000) == []
    assert reaper.tick(t + 5_000) == ["w1"]


def test_reaper_never_reaps_a_worker_that_keeps_beating(app):
    job_id = held_job(app, "w1", T0)
    reaper = Reaper(app)
    for t in range(T0, T0 + 120_000, 1000):
        if (t - T0) % 3000 == 0:
            beat(app.backend, "w1", t)
        assert reaper.tick(t) == [], t
    assert app.backend.job_hash(job_id)["s"] == b"active"
    assert [w for w, _ in app.backend.workers()] == ["w1"]


def test_worker_that_beats_between_observation_and_reap_survives(app):
    job_id = held_job(app, "w1", T0)
    reaper = Reaper(app)
    for t in range(T0, T0 + 9000, 1000):
        assert reaper.tick(t) == []
    beat(app.backend, "w1", T0 + 9500)  # just in time
    # First seen at T0 + 10 s: the new heartbeat counts from there.
    for t in range(T0 + 10_000, T0 + 20_000, 1000):
        assert reaper.tick(t) == [], t
    assert app.backend.job_hash(job_id)["s"] == b"active"
    assert reaper.tick(T0 + 20_000) == ["w1"]


def test_reap_with_a_stale_expected_heartbeat_does_nothing(app):
    job_id = held_job(app, "w1", T0)
    beat(app.backend, "w1", T0 + 5000)
    before = app.backend.job_hash(job_id)
    assert reap(app, "w1", T0 + 20_000, expected_hb=T0) is None
    assert app.backend.job_hash(job_id) == before
    assert app.backend.workers() == [("w1", T0 + 5000)]
    assert app.backend.client.smembers(app.backend.keys.worker_jobs("w1")) == {job_id.encode()}
    # With the heartbeat it really has, it is reaped.
    assert reap(app, "w1", T0 + 20_000, expected_hb=T0 + 5000) == {job_id: "requeued"}


def test_scheduler_tick_reaps_only_after_watching_a_whole_timeout(app):
    job_id = held_job(app, "w1", T0)
    scheduler = Scheduler(app)
    t = T0 + 100_000
    while t < T0 + 109_000:
        scheduler.tick(t)
        t += 500
    assert app.backend.job_hash(job_id)["s"] == b"active"
    scheduler.tick(T0 + 200_000)  # a gap: it counts as half a timeout of watch
    assert app.backend.job_hash(job_id)["s"] == b"active"
    t = T0 + 200_000
    while app.backend.job_hash(job_id)["s"] == b"active":
        t += 500
        scheduler.tick(t)
        assert t <= T0 + 206_000
    assert t >= T0 + 205_000
    assert app.backend.job_hash(job_id)["s"] == b"queued"


def test_short_timeout_reaper_treats_an_outage_longer_than_half_its_timeout_as_a_gap(make_app):
    """With heartbeat_timeout=1 s a 1.5 s outage (no worker could beat) must not
    reap the workers at the first tick after it."""
    app = make_app(heartbeat_timeout=1)
    job_id = held_job(app, "w1", T0)
    reaper = Reaper(app)
    for t in range(T0, T0 + 1000, 200):
        assert reaper.tick(t) == []
    t = T0 + 800 + 1500  # the server was unreachable for 1.5 s
    assert reaper.tick(t) == []
    assert app.backend.job_hash(job_id)["s"] == b"active"
    for step in range(1, 30):  # the worker beats again (every 200 ms) from 100 ms after the outage
        beat(app.backend, "w1", t + step * 200 - 100)
        assert reaper.tick(t + step * 200) == []
    assert app.backend.job_hash(job_id)["s"] == b"active"


# ---------------------------------------------------------------- wake-ups


def test_wake_up_marker_follows_work_not_every_push(app):
    """Through the enqueue script (custom ids take it): a push that makes a
    level non-empty wakes one sleeper; pushes onto a non-empty list wake
    nobody; a claim that leaves work behind passes the wake-up on; a claim
    that empties the queue does not."""
    b = app.backend
    marker = b.keys.notify("default")
    ids = iter(f"id-{i}" for i in range(100))
    enqueue_call = app.enqueue_call

    def scripted(*args, **kw):
        return enqueue_call(*args, job_id=next(ids), **kw)

    app.enqueue_call = scripted

    def markers() -> int:
        return int(b.client.llen(marker))

    def take_marker() -> None:
        assert b.client.lpop(marker) == b"1"

    app.enqueue_call("token", (), {}, {})
    assert markers() == 1
    take_marker()  # a sleeper woke...
    app.enqueue_call("token", (), {}, {})
    app.enqueue_call("token", (), {}, {})
    assert markers() == 0  # ...and will claim these: no one else to wake
    app.enqueue_call("token", (), {}, {"priority": "high"})
    assert markers() == 1  # a new level: its first push wakes
    take_marker()
    assert len(claim(app, "w1", T0, count=2)) == 2
    assert markers() == 1  # work left behind: the next sleeper is woken
    take_marker()
    assert len(claim(app, "w2", T0, count=10)) == 2
    assert markers() == 0  # nothing left: nobody woken for nothing
    assert b.queue_levels("default") == {}
    app.enqueue_call("token", (), {}, {}, front=True)
    assert markers() == 1 and b.queue_levels("default") == {0: 1}


def test_a_plain_delay_leaves_one_wake_up_marker_at_most(app):
    """The MULTI path (a fresh id, no delay, unique key or resource) wakes a
    sleeper on every push, never leaving more than one marker."""
    b = app.backend
    for _ in range(3):
        app.enqueue_call("token", (), {}, {})
    assert b.client.llen(b.keys.notify("default")) == 1
    assert b.queue_levels("default") == {0: 3}
    assert b.client.smembers(b.keys.queues) == {b"default"}
    assert len(claim(app, "w1", T0, count=10)) == 3


def test_a_plain_delay_registers_its_queue_and_bucket_expiry_once_a_minute(app, monkeypatch):
    """SADD queues and the minute bucket's PEXPIRE go with the first plain job
    of a task and queue in a minute; later jobs leave them out. A namespace
    wiped meanwhile shows in the bucket counter's reply and both are sent
    again; a bucket missing its expiry gets it from the trim; a wipe by this
    process sends full tails at once."""
    b = app.backend
    real_time = time.time
    shift = 30 - real_time() % 60  # the clock starts half way through a minute: the steps below cross none
    monkeypatch.setattr(time, "time", lambda: real_time() + shift)
    sent: list[bytes] = []
    pipeline = b.wire.pipeline

    def spy(commands: Any, **kwargs: Any) -> Any:
        sent.append(b"".join(kwargs.get("data") or [pack(c) for c in commands]))
        return pipeline(commands, **kwargs)

    b.wire.pipeline = spy
    app.enqueue_call("token", (), {}, {})
    app.enqueue_call("token", (), {}, {})
    assert b"SADD" in sent[-2] and b"PEXPIRE" in sent[-2]
    assert b"SADD" not in sent[-1] and b"PEXPIRE" not in sent[-1]
    minute = int(time.time() * 1000) // 60000
    bucket = b.keys.stats_minute(minute)
    assert b.client.pttl(bucket) > 0
    assert b.client.smembers(b.keys.queues) == {b"default"}
    assert b.queue_levels("default") == {0: 2}
    assert b.client.hget(b.keys.stats_counters, "default:token|enqueued") == b"2"

    b.client.persist(bucket)  # as if re-created without its expiry
    b.trim_finished(60_000, 60_000)
    assert 0 < b.client.pttl(bucket) <= 7_200_000

    b.client.delete(b.keys.queues, bucket)  # wiped by another process: the reply shows it
    app.enqueue_call("token", (), {}, {})
    assert b"SADD" not in sent[-2] and sent[-1].startswith(b"*3\r\n$4\r\nSADD")
    assert b.client.smembers(b.keys.queues) == {b"default"} and b.client.pttl(bucket) > 0
    app.enqueue_call("token", (), {}, {})
    assert b"SADD" in sent[-1] and b"PEXPIRE" in sent[-1]  # full tails again

    b.delete_namespace()
    app.enqueue_call("token", (), {}, {})
    assert b"PEXPIRE" in sent[-1] and b.client.pttl(bucket) > 0

    monkeypatch.setattr(time, "time", lambda: real_time() + shift + 60)  # the next minute
    app.enqueue_call("token", (), {}, {})
    assert b"PEXPIRE" in sent[-1]


def test_a_plain_delay_reports_a_command_that_failed_inside_exec(app):
    """A key of the wrong type (a damaged namespace) fails its command inside
    EXEC; the caller hears of it instead of a silent half-registration."""
    b = app.backend
    b.client.set(b.keys.queues, "not a set")
    with pytest.raises(Exception, match="WRONGTYPE"):
        app.enqueue_call("token", (), {}, {})
    b.client.delete(b.keys.queues)
    app.enqueue_call("token", (), {}, {})
    assert b.client.smembers(b.keys.queues) == {b"default"}
