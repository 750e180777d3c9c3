"""Job-control edge cases: result waits on jobs the scripts finish
themselves, failed jobs restarted from stalled, cap trims meeting a reused
id, and bulk operations over the whole failed index."""

from __future__ import annotations

import threading
import time

import pytest

from taskq import JobState, ResultTimeout, TaskFailed
from taskq.worker.outcome import Outcome, error_entry
from tests.apps.control import consumer, run_until, stop
from tests.conftest import wait_for
from tests.storage.test_job_control import claimed, settle

# ---------------------------------------------------------------- result waits


def test_result_waits_by_default_for_the_tombstone_timeout_of_the_enqueue(make_app):
    """``result()`` without a timeout waits the job's ``tombstone_timeout``:
    a per-call value, ``task_flags`` over the decorator, and the task's own
    for a handle rebuilt with ``app.job(id)``; never the 10 s default."""
    app = make_app(task_flags={"flagged": {"tombstone_timeout": 0.2}})
    app.task(name="flagged", tombstone_timeout=30)(lambda: None)
    app.task(name="plain", tombstone_timeout=0.2)(lambda: None)
    jobs = [app.tasks["flagged"].delay(), app.tasks["plain"].apply_async(tombstone_timeout=0.1),
            app.job(app.tasks["plain"].delay().id), *app.tasks["plain"].map([1])]
    for job in jobs:
        started = time.monotonic()
        with pytest.raises(ResultTimeout):
            job.result()  # no worker runs: it waits the whole default
        assert time.monotonic() - started < 8, job  # 0.1 or 0.2 s; never the 10 s default nor the 30 s


def test_result_of_a_tombstone_job_cancelled_before_it_ran_returns_at_once(capp):
    """A tombstone task's result() waits on r:<id> without watch(): a job
    cancelled before it ran (cancel.lua finalizes with keep_ms 0 and no
    `wt`) never gets an outcome pushed, so the wait runs the whole timeout."""
    job = capp.tasks["echo"].apply_async((1,), delay=60)
    assert job.cancel() == "cancelled"
    start = time.monotonic()
    with pytest.raises(TaskFailed):
        job.result(timeout=60)
    assert time.monotonic() - start < 30, "result() slept the whole timeout on a finished job"


def test_a_tombstone_waiter_wakes_when_the_job_is_cancelled(capp):
    job = capp.tasks["echo"].apply_async((1,), delay=60)
    outcome: list[object] = []

    def wait() -> None:
        try:
            job.result(timeout=60)
        except Exception as exc:
            outcome.append(exc)

    t = threading.Thread(target=wait)
    t.start()
    try:
        wait_for(lambda: any(c.get("cmd") == "blmove" for c in capp.backend.client.client_list()),
                 30, what="the waiter to block")
        assert job.cancel() == "cancelled"
        # within 30 s of the cancel: not at the end of its own 60 s timeout
        wait_for(lambda: outcome, timeout=30, what="the waiter to wake on the cancel")
    finally:
        t.join(70)
    assert isinstance(outcome[0], TaskFailed)


def test_result_after_unstall_of_a_failed_job_does_not_return_the_old_failure(capp):
    """stall (from failed) + unstall puts the job back in its queue, but the
    failed outcome left in r:<id> stays: result() answers with it at once
    while the job is still queued to run again (requeue.lua deletes r:<id>)."""
    job, worker, token = claimed(capp, "echo", 7)
    settle(capp, worker, [Outcome(job.id, token, "fail", error_entry(ValueError("old"), 1),
                                  ttl_ms=60_000, keep_ms=60_000)])
    assert job.state == JobState.FAILED
    job.stall()
    job.unstall()
    assert job.state == JobState.QUEUED
    with pytest.raises(ResultTimeout):  # it has not run again yet
        job.result(timeout=0.5)


def test_result_after_requeue_of_a_stalled_failed_job_does_not_return_the_old_failure(capp):
    job, worker, token = claimed(capp, "echo", 7)
    settle(capp, worker, [Outcome(job.id, token, "fail", error_entry(ValueError("old"), 1),
                                  ttl_ms=60_000, keep_ms=60_000)])
    job.stall()
    job.requeue()
    assert job.state == JobState.QUEUED
    with pytest.raises(ResultTimeout):
        job.result(timeout=0.5)


# ---------------------------------------------------------------- stalled from failed


def test_requeue_of_a_job_stalled_from_failed_resets_its_attempts(capp):
    """A failed job starts over when it comes back: requeue (from failed)
    and unstall reset its attempts; requeue of the same job once stalled
    does not, so it runs once with no retry left."""
    job = capp.tasks["flaky"].apply_async(retry=1)  # 2 attempts
    c = consumer(capp)
    run_until(c, lambda: job.state == JobState.FAILED)
    assert job.info().attempts == 2
    job.stall()
    job.requeue()
    info = job.info()
    assert info.state == JobState.QUEUED
    assert info.attempts == 0 and info.finished_at is None
    run_until(c, lambda: job.state == JobState.FAILED)
    stop(c)
    assert job.info().attempts == 2  # retried once, as a fresh job


def test_unstall_of_a_failed_job_withdraws_an_old_cancel_request(capp):
    """A cancel asked for while the job ran, which then failed anyway,
    survives stall + unstall: the job "starts over" but is cancelled at its
    next claim and never runs (requeue withdraws the request)."""
    job, worker, token = claimed(capp, "noop")
    assert job.cancel() == "requested"
    settle(capp, worker, [Outcome(job.id, token, "fail", error_entry(ValueError("x"), 1), ttl_ms=60_000)])
    assert job.state == JobState.FAILED
    job.stall()
    job.unstall()
    _, rows = settle(capp, "w-next", count=1, queues=[job.info().queue])
    assert rows and rows[0][0].decode() == job.id, job.info()
    assert job.state == JobState.ACTIVE


# ---------------------------------------------------------------- finished indexes


def test_cap_trim_never_deletes_a_live_job_with_a_reused_id(capp):
    """A finished job's hash expires before trim_finished drops its index
    entry. A new job enqueued under the same (custom) id is live, but the
    stale entry is the oldest in the index: when the index goes over its
    cap, flush_finished DELs the new job's hash -- a queued job lost."""
    s = capp.settings
    b = capp.backend
    caps = (s.failed_max, 20, s.error_history, int(s.succeeded_ttl * 1000))
    noop = capp.tasks["noop"]
    old = noop.apply_async(job_id="order-42", queue="qa")
    _, rows = b.settle_claim("wa", 1, [], ["qa"], [], caps)
    b.settle_claim("wa", 0, [Outcome(old.id, int(rows[0][1]), "ok", ttl_ms=60_000).fields()], [], [], caps)
    assert old.state == JobState.SUCCEEDED
    b.client.delete(b.keys.job(old.id))  # its hash expired; trim has not run yet
    new = noop.apply_async(job_id="order-42", queue="qb")
    assert new.created and new.state == JobState.QUEUED
    # 21 more jobs finish: the done index (cap 20) is trimmed
    for _i in range(21):
        noop.apply_async(queue="qa")
    _, rows = b.settle_claim("wa", 21, [], ["qa"], [], caps)
    assert len(rows) == 21
    b.settle_claim("wa", 0, [Outcome(r[0].decode(), int(r[1]), "ok", ttl_ms=60_000).fields() for r in rows],
                   [], [], caps)
    assert new.state == JobState.QUEUED  # JobNotFound: the live job was deleted


def server_ms(client) -> float:
    sec, usec = client.time()
    return sec * 1000 + usec // 1000


def test_cap_trim_never_deletes_a_reused_id_finished_into_the_other_index(capp):
    """A failed job's id stays in the failed index after its hash expired,
    until trim_finished drops it. A new job under that id that succeeds is
    in done, and (stale) in failed: when the failed index passes its cap,
    its trim deleted the succeeded job (it is not live). The other way
    round, trim_finished never dropped a stale done entry of a failed job."""
    s = capp.settings
    b = capp.backend
    caps = (10, 10, s.error_history, 60_000)
    noop = capp.tasks["noop"]
    blob = error_entry(ValueError("x"), 1)

    def run(job_ids, kind, caps=caps):
        _, rows = b.settle_claim("wa", len(job_ids), [], ["qa"], [], caps)
        assert sorted(r[0].decode() for r in rows) == sorted(job_ids)
        b.settle_claim("wa", 0, [Outcome(r[0].decode(), int(r[1]), kind, blob if kind == "fail" else b"",
                                         ttl_ms=60_000).fields() for r in rows], [], [], caps)

    old = noop.apply_async(job_id="order-43", queue="qa")
    run([old.id], "fail")
    b.client.delete(b.keys.job(old.id))  # its hash expired; trim has not run yet
    new = noop.apply_async(job_id="order-43", queue="qa")
    assert new.created
    run([new.id], "ok")
    assert new.state == JobState.SUCCEEDED
    # 11 more jobs fail: the failed index (cap 10) is trimmed of its oldest entries
    run([j.id for j in noop.map(range(11), queue="qa")], "fail")
    assert new.state == JobState.SUCCEEDED  # JobNotFound: the succeeded job was deleted
    assert b.client.zscore(b.keys.done, new.id) is not None

    # the other way round: a stale done entry, the new job fails
    b.client.delete(b.keys.job(new.id))
    again = noop.apply_async(job_id="order-43", queue="qa")
    # a cap that is not reached: its trim would drop the oldest of equal scores
    # (the 11 failed in the same millisecond may sort after "order-43")
    run([again.id], "fail", caps=(100, 100, s.error_history, 60_000))
    done_at = b.client.zscore(b.keys.done, again.id)
    assert done_at is not None  # stale until trimmed
    wait_for(lambda: server_ms(b.client) > done_at + 1, timeout=5)
    b.trim_finished(3_600_000, 1)  # done entries older than 1 ms go; the failure is minutes from its TTL
    assert b.client.zscore(b.keys.done, again.id) is None
    assert b.client.zscore(b.keys.failed, again.id) is not None
    assert again.state == JobState.FAILED


# ---------------------------------------------------------------- the failed set


def test_requeue_failed_without_filters_requeues_every_failed_job(redis_url, namespace):
    """requeue_failed() ("all when none") reads at most 10,000 failed jobs,
    a fixed limit: with failed_max above it (or the 5 % the index may grow
    past its cap between trims) the oldest failed jobs are silently left."""
    from tests.apps.control import build

    app = build(redis_url, namespace, failed_max=20_000)
    try:
        b, s = app.backend, app.settings
        caps = (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))
        jobs = app.tasks["noop"].map(range(10_050), queue="bulk")
        _, rows = b.settle_claim("wb", len(jobs), [], ["bulk"], [], caps)
        assert len(rows) == len(jobs)
        blob = error_entry(ValueError("x"), 1)
        b.settle_claim("wb", 0, [Outcome(r[0].decode(), int(r[1]), "fail", blob, ttl_ms=600_000).fields()
                                 for r in rows], [], [], caps)
        assert b.zcard(b.keys.failed) == len(jobs)
        assert app.control.requeue_failed() == len(jobs)
        assert b.zcard(b.keys.failed) == 0
    finally:
        app.backend.delete_namespace()
        app.close()
