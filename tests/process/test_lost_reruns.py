"""A job whose worker is lost runs again by default (``max_lost``), with
``retry=0``: real worker processes SIGKILLed at random while jobs run."""

from __future__ import annotations

import os
import random
import signal
import threading

from taskq import JobState
from tests.conftest import wait_for, worker_ids_of
from tests.process.test_crash import client, task_stat  # noqa: F401 - the fixture

APP = "tests.apps.crashy:app"


def test_200_jobs_with_retry_0_all_succeed_while_children_are_sigkilled(client, start_worker, tmp_path):  # noqa: F811
    env = {"TASKQ_HEARTBEAT_TIMEOUT": "2"}
    workers = [start_worker(APP, "-c", "2", env=env), start_worker(APP, "-c", "2", env=env, ready=False)]
    wait_for(lambda: all(len(worker_ids_of(client, w)) == 2 for w in workers), 30, what="4 children")
    marks = tmp_path / "marks"
    marks.mkdir()
    jobs = client.tasks["mark0"].map([(str(marks), n, 0.1) for n in range(200)])
    kills: list[int] = []
    done = threading.Event()

    def killer() -> None:
        rng = random.Random(7)
        while not done.wait(0.4):
            pids = [p for w in workers for p in w.child_pids()]
            if pids:
                victim = rng.choice(pids)
                try:
                    os.kill(victim, signal.SIGKILL)
                    kills.append(victim)
                except ProcessLookupError:
                    pass

    t = threading.Thread(target=killer, daemon=True)
    t.start()
    try:
        wait_for(lambda: task_stat(client, "mark0", "succeeded") == 200, 120, interval=0.1,
                 what="200 jobs to succeed")
    finally:
        done.set()
        t.join(5)
    states = {j.state for j in jobs}
    assert states == {JobState.SUCCEEDED}
    ran = [int(n) for f in marks.iterdir() for n in f.read_text().split()]
    assert set(ran) == set(range(200))
    lost = sum(j.info().lost_count for j in jobs)
    assert len(kills) >= 3 and task_stat(client, "mark0", "lost") == lost
    assert task_stat(client, "mark0", "failed") == 0
    print(f"{len(kills)} SIGKILLs; {lost} runs lost with their worker and run again; "
          f"{len(ran)} completed runs for 200 jobs")


def test_past_max_lost_a_loss_uses_an_attempt_and_then_fails(client, start_worker):  # noqa: F811
    start_worker(APP)
    job = client.tasks["crash"].apply_async(max_lost=0, retry=0)  # exits its process every run
    wait_for(lambda: job.state == JobState.FAILED, 30, what="the job to fail")
    info = job.info()
    assert (info.attempts, info.lost_count) == (1, 1)
    assert [e["type"] for e in info.errors] == ["WorkerLost"]
    assert task_stat(client, "crash", "lost") == 0
