"""How the supervisor returns the jobs of a dead child with several consumer
threads: the crashing job's loss counts, the rest did nothing wrong."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from taskq import JobState
from taskq.worker.config import WorkerConfig
from taskq.worker.shared import Slot
from taskq.worker.supervisor import Child, Supervisor


@pytest.fixture
def two_threads(app):
    app.task(name="work", retry=3, retry_interval=0)(lambda: None)
    first, second = app.tasks["work"].delay(), app.tasks["work"].delay()
    b = app.backend
    b.register_tasks({"work": 4})
    caps = (1000, 1000, 10, 60_000)
    (_, rows0), (_, rows1) = (b.settle_claim(w, 1, [], ["default"], [], caps) for w in ("c:1:0.0:x", "c:1:0.1:x"))
    assert [r[0].decode() for r in rows0 + rows1] == [first.id, second.id]
    slots = [Slot(), Slot()]
    child = Child(0, ["c:1:0.0:x", "c:1:0.1:x"], SimpleNamespace(exitcode=-9), slots)
    return Supervisor(app, WorkerConfig(concurrency=1, threads=2)), child, first, second


def test_a_crash_counts_the_running_jobs_loss_and_refunds_the_idle_threads_jobs(two_threads):
    sup, child, running, held = two_threads
    child.slots[0].set(running.id, 0.0)  # thread 0 ran it; thread 1 was between jobs
    assert sup.reap_child(child, "lost")
    info = running.info()
    # within max_lost: the loss is counted, the attempt refunded
    assert info.state == JobState.QUEUED and (info.attempts, info.lost_count) == (0, 1)
    assert [e["type"] for e in info.errors] == ["WorkerLost"]
    info = held.info()
    assert info.state == JobState.QUEUED and info.attempts == 0  # refunded
    assert not info.errors


def test_a_forced_cancel_kill_refunds_every_threads_jobs(two_threads):
    sup, child, running, held = two_threads
    child.slots[0].set(running.id, 0.0)
    child.slots[0].mark_killed_self()
    assert sup.reap_child(child, "lost")
    for job in (running, held):
        info = job.info()
        assert info.state == JobState.QUEUED and info.attempts == 0 and not info.errors


def test_a_hard_timeout_counts_the_timed_out_job_even_if_a_cancel_killed_too(two_threads):
    sup, child, running, held = two_threads
    child.slots[0].set(running.id, 0.0)
    child.slots[1].mark_killed_self()  # a forced cancel raced the supervisor's kill
    child.timed_out, child.timed_out_slot = running.id, 0
    assert sup.reap_child(child, "timeout")
    info = running.info()
    assert info.attempts == 1 and [e["type"] for e in info.errors] == ["TaskTimeout"]
    info = held.info()
    assert info.attempts == 0 and not info.errors
