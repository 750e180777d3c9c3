"""Retention: finished jobs expire, the finished indexes are capped and
trimmed (finalize in _lib.lua, trim_finished.lua), so a namespace that has
run 20,000 jobs goes back to its baseline of keys and memory; a finished job
trimmed from its index stays readable until its TTL.
"""

from __future__ import annotations

import logging

import pytest

from taskq import JobNotFound, JobState
from taskq.worker.scheduler import Scheduler
from tests.apps.control import build, consumer, run_until, stop
from tests.conftest import wait_for

N_OK = 18_000
N_FAILED = 2_000
DONE_MAX = 1_000
FAILED_MAX = 1_000


@pytest.fixture
def small(redis_url, namespace):
    app = build(redis_url, namespace, succeeded_ttl=1, failed_ttl=1, done_max=DONE_MAX, failed_max=FAILED_MAX)
    yield app
    app.backend.delete_namespace()
    app.close()


def used_memory(app) -> int:
    return int(app.backend.info("memory")["used_memory"])


def keys_of(app) -> list[str]:
    b = app.backend
    return sorted(k.decode().removeprefix(b.prefix) for k in b.client.scan_iter(match=b.keys.pattern, count=1000))


def test_twenty_thousand_finished_jobs_leave_only_bounded_keys_behind(small, caplog):
    caplog.set_level(logging.ERROR, "taskq.worker")  # 2,000 expected failures
    app, b = small, small.backend
    assert b.count_keys() == 0
    mem_before = used_memory(app)

    ok = app.tasks["noop"].map(range(N_OK))
    bad = app.tasks["flaky"].map([("ValueError",)] * N_FAILED, retry=0)
    assert b.count_keys() >= N_OK + N_FAILED
    mem_loaded = used_memory(app)

    c = consumer(app, prefetch=1_000)
    run_until(c, lambda: sum(b.task_counters().get(f, 0) for f in ("noop|succeeded", "flaky|failed"))
              == N_OK + N_FAILED, timeout=240, what="all jobs to finish")  # 70 s seen on one busy core
    stop(c)
    assert len(ok) == N_OK and len(bad) == N_FAILED

    # the finished indexes are capped (trimmed back to the cap whenever they pass
    # it by 5%); the jobs trimmed from them stay until their TTL
    slack = DONE_MAX // 20
    assert DONE_MAX <= b.zcard(b.keys.done) <= DONE_MAX + slack
    assert FAILED_MAX <= b.zcard(b.keys.failed) <= FAILED_MAX + slack

    # after the TTLs every job hash has expired
    wait_for(lambda: not [k for k in keys_of(app) if k.startswith("j:")], 30, 0.2, "job hashes to expire")
    Scheduler(app).tick()  # trims the indexes
    left = keys_of(app)
    assert b.zcard(b.keys.done) == 0 and b.zcard(b.keys.failed) == 0
    bounded = {"queues", "tasks", "qn:default", "st:c", "st:h:noop", "st:h:flaky", "reaper"}
    assert all(k in bounded or k.startswith("st:m:") for k in left), left
    assert len(left) <= len(bounded) + 3
    assert 0 < b.client.pttl(b.keys.reaper) <= 60_000  # the reapers' watch expires once none passes
    for k in left:
        if k.startswith("st:m:"):
            assert 0 < b.client.ttl(b.prefix + k) <= 7200  # per-minute stats expire
    assert b.client.hlen(b.keys.stats_histogram("noop")) <= 20

    # what is left of the data is a few hundred bytes of counters; the server's
    # own memory (script cache, Lua heap, table sizes) keeps up to ~1 MB more
    assert sum(b.client.memory_usage(b.prefix + k) or 0 for k in left) < 8_000
    mem_after = used_memory(app)
    assert mem_loaded - mem_before > 2_000_000  # the jobs did take room
    assert mem_after - mem_before < 1_500_000, (mem_before, mem_loaded, mem_after)


@pytest.fixture
def lasting(redis_url, namespace):
    """As ``small``, with finished jobs kept for an hour: none expires while a test looks."""
    app = build(redis_url, namespace, succeeded_ttl=3600, failed_ttl=3600, done_max=DONE_MAX,
                failed_max=FAILED_MAX)
    yield app
    app.backend.delete_namespace()
    app.close()


def test_trim_drops_index_entries_whose_jobs_expired(lasting):
    """Entries whose job hash is there are kept, however old; those whose hash
    expired (here: given a 1 ms expiry, half of each index) are dropped."""
    app, b = lasting, lasting.backend
    jobs = app.tasks["noop"].map(range(50)) + app.tasks["flaky"].map([("ValueError",)] * 50, retry=0)
    c = consumer(app, prefetch=100)
    run_until(c, lambda: all(j.state.finished for j in jobs[::10]) and b.zcard(b.keys.done) +
              b.zcard(b.keys.failed) == 100, what="jobs to finish")
    stop(c)
    assert b.trim_finished(1, 1) == 0  # every entry is past the age limits, but no job expired yet
    assert (b.zcard(b.keys.done), b.zcard(b.keys.failed)) == (50, 50)
    gone = jobs[::2]
    for job in gone:
        b.client.pexpire(b.keys.job(job.id), 1)
    wait_for(lambda: not any(b.job_hash(j.id) for j in gone), 30, 0.05, "job hashes to expire")
    assert b.trim_finished(1, 1) == 50
    assert (b.zcard(b.keys.done), b.zcard(b.keys.failed)) == (25, 25)
    kept = {x.decode() for key in (b.keys.done, b.keys.failed) for x in b.client.zrange(key, 0, -1)}
    assert kept == {j.id for j in jobs[1::2]}


def test_trim_keeps_entries_of_jobs_that_still_exist(small):
    app, b = small, small.backend
    job = app.tasks["flaky"].apply_async(retry=0)
    c = consumer(app)
    run_until(c, lambda: job.state == JobState.FAILED)
    stop(c)
    b.client.persist(b.keys.job(job.id))  # e.g. an operator keeps it
    b.client.zadd(b.keys.failed, {job.id: 0})  # and it is old
    assert b.trim_finished(1, 1) == 0
    assert b.zcard(b.keys.failed) == 1


def test_a_finished_job_trimmed_from_its_index_is_readable_until_its_ttl(lasting):
    """3,000 finished jobs with an index cap of 1,000 each: every one still
    answers its state, result and errors. Before, the cap deleted the jobs
    it trimmed, and ``app.job(id)`` raised JobNotFound for two in three."""
    app, b = lasting, lasting.backend
    n = 3 * DONE_MAX // 2
    ok = app.tasks["noop"].map(range(n))
    bad = app.tasks["flaky"].map([("ValueError",)] * n, retry=0)
    c = consumer(app, prefetch=500)
    run_until(c, lambda: sum(b.task_counters().get(f, 0) for f in ("noop|succeeded", "flaky|failed")) == 2 * n,
              timeout=120, what="all jobs to finish")
    stop(c)
    slack = DONE_MAX // 20
    assert b.zcard(b.keys.done) <= DONE_MAX + slack and b.zcard(b.keys.failed) <= FAILED_MAX + slack
    assert {app.job(j.id).state for j in ok} == {JobState.SUCCEEDED}
    failed = [app.job(j.id).info() for j in bad]
    assert {i.state for i in failed} == {JobState.FAILED}
    assert all(i.errors and i.errors[-1]["type"] == "ValueError" for i in failed)
    oldest = app.job(ok[0].id)
    assert 3500 < b.client.ttl(b.keys.job(oldest.id)) <= 3600  # it goes with its TTL


def test_jobs_kept_without_expiry_are_bounded_by_the_cap(redis_url, namespace):
    """succeeded_ttl=0 keeps finished jobs without expiry: the index cap is
    then their retention, deleting the oldest, so memory stays bounded."""
    app = build(redis_url, namespace, succeeded_ttl=0, done_max=100)
    try:
        b = app.backend
        jobs = app.tasks["noop"].map(range(300))
        c = consumer(app, prefetch=100)
        run_until(c, lambda: b.task_counters().get("noop|succeeded", 0) == 300, what="all jobs to finish")
        stop(c)
        kept = [j for j in jobs if b.job_hash(j.id)]
        assert 100 <= len(kept) <= 105 and kept == jobs[-len(kept):]
        with pytest.raises(JobNotFound, match="succeeded_ttl=0s"):
            _ = app.job(jobs[0].id).state
    finally:
        b.delete_namespace()
        app.close()


def test_job_not_found_names_the_retention(lasting):
    with pytest.raises(JobNotFound, match=r"succeeded_ttl=3600s, a failed one failed_ttl=3600s"):
        lasting.job("never-there").info()
