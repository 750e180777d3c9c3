"""Outcomes batched behind a job of a quick task are sent on time even when
that job hangs: ``flush_interval`` bounds how long they wait, whatever runs."""

from __future__ import annotations

import threading

from taskq import JobState
from tests.apps.control import consumer
from tests.conftest import wait_for


def run_ten(app, step):
    """Ten jobs of ``step`` on a consumer thread: one batch holds them all
    (after a first claim of one), and the first nine are done in well under
    the flush interval, so they wait as one batch while the tenth runs."""
    jobs = [step.delay(n) for n in range(10)]
    c = consumer(app, prefetch=100, flush_interval=0.5, batch_budget=10.0)
    return jobs, c, threading.Thread(target=c.run, name="consumer")


def test_outcomes_before_a_quick_task_that_hangs_are_sent_while_it_runs(make_app):
    app = make_app()
    release = threading.Event()
    hooks: list[tuple[str, str]] = []

    @app.task(name="step")
    def step(n: int) -> int:
        if n == 9:
            release.wait(60)  # a task that was always quick hangs
        return n

    app.on("job_succeeded", lambda data: hooks.append((data.id, threading.current_thread().name)))
    jobs, c, runner = run_ten(app, step)
    runner.start()
    try:
        wait_for(lambda: jobs[9].state == JobState.ACTIVE, what="the last job running")
        # sent while the last one still runs: recorded, results kept, no lease held
        wait_for(lambda: all(j.state == JobState.SUCCEEDED for j in jobs[:9]), timeout=10,
                 what="the finished jobs recorded while the hung job runs")
        assert release.is_set() is False and jobs[9].state == JobState.ACTIVE
        leased = {m.decode() for m in app.backend.client.smembers(app.backend.keys.worker_jobs(c.worker_id))}
        assert leased == {jobs[9].id}  # a crash now would rerun only the hung job
        ran_on = {name for _, name in hooks}
        assert ran_on <= {"consumer"}  # hooks never run on the flusher's thread
    finally:
        release.set()
        wait_for(lambda: jobs[9].state == JobState.SUCCEEDED, what="the last job done")
        c.stopping.set()
        runner.join(20)
    assert not runner.is_alive()
    # every hook ran once, on the consumer's thread, in job order
    assert [i for i, _ in hooks] == [j.id for j in jobs] and {n for _, n in hooks} == {"consumer"}


def test_the_hooks_deferred_by_the_flusher_do_not_hold_back_the_outcome_of_the_job_that_hung(make_app):
    """The flusher sent the outcomes done before a hung job; their hooks run
    on the consumer's thread once it returns. A slow hook there must not
    keep the hung job's own outcome waiting (active, its result held back,
    run again if the process dies meanwhile): no one runs the flusher then."""
    app = make_app()
    release = threading.Event()
    slow_hook_running = threading.Event()
    hook_release = threading.Event()

    @app.task(name="step")
    def step(n: int) -> int:
        if n == 9:
            release.wait(60)
        return n

    def hook(data) -> None:
        if data.id == jobs[5].id:
            slow_hook_running.set()
            hook_release.wait(30)  # e.g. a notification sent over a slow network

    app.on("job_succeeded", hook)
    jobs, c, runner = run_ten(app, step)
    runner.start()
    try:
        wait_for(lambda: jobs[9].state == JobState.ACTIVE, what="the last job running")
        wait_for(lambda: all(j.state == JobState.SUCCEEDED for j in jobs[:9]), timeout=10,
                 what="the finished jobs recorded while the hung job runs")
        release.set()
        assert slow_hook_running.wait(10)
        wait_for(lambda: jobs[9].state == JobState.SUCCEEDED, timeout=10,
                 what="the hung job's outcome while an earlier job's hook is slow")
        assert not hook_release.is_set() and runner.is_alive()  # recorded while the hook still ran
    finally:
        release.set()
        hook_release.set()
        wait_for(lambda: jobs[9].state == JobState.SUCCEEDED, timeout=20, what="the last job done")
        c.stopping.set()
        runner.join(20)
    assert not runner.is_alive()


def test_a_forced_cancel_of_the_hung_job_runs_the_hooks_the_flusher_deferred(make_app, monkeypatch):
    """A forced cancel kills the process: the hooks of the outcomes the
    flusher sent while the job ran run before that, or never."""
    app = make_app()
    release = threading.Event()
    hooks: list[str] = []
    killed: list[list[str]] = []

    @app.task(name="step")
    def step(n: int) -> int:
        if n == 9:
            release.wait(60)
        return n

    # the kill, recorded instead of done: the hooks run so far are what a real kill would leave
    monkeypatch.setattr("taskq.worker.child.kill_self", lambda: (killed.append(list(hooks)), release.set()))
    app.on("job_succeeded", lambda data: hooks.append(data.id))
    jobs, c, runner = run_ten(app, step)
    c.heartbeat.interval = 0.05  # delivers the cancel request
    runner.start()
    try:
        wait_for(lambda: all(j.state == JobState.SUCCEEDED for j in jobs[:9]), timeout=10,
                 what="the finished jobs recorded while the hung job runs")
        assert jobs[9].cancel(force=True) == "requested"
        wait_for(lambda: killed, timeout=10, what="the forced cancel")
    finally:
        release.set()
        c.stopping.set()
        runner.join(20)
    assert killed[0] == [j.id for j in jobs[:9]]
    assert jobs[9].state == JobState.CANCELLED
