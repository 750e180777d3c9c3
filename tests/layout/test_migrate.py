"""``taskq migrate``: a namespace written in the one-slot layout, with jobs
queued, scheduled, active (leased to a worker that died), failed, and a
periodic task's last tick, is moved to a slot per queue; a worker of the
new layout then runs every job and the periodic task goes on from its
last tick."""

from __future__ import annotations

import subprocess
import sys

import redis

from taskq import JobState
from taskq.worker.scheduler import Scheduler
from tests.apps.sharded import build
from tests.conftest import ROOT, wait_for


def migrate(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskq_cli.main", "migrate", "tests.apps.sharded:app"],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=60)


def test_migrate_moves_every_kind_of_state_and_a_new_worker_runs_it(redis_url, namespace, worker_env,
                                                                    start_worker):
    old = build(redis_url, namespace, key_layout="namespace", heartbeat_timeout=1.0)
    new = build(redis_url, namespace, key_layout="queue", heartbeat_timeout=1.0)
    env = {**worker_env, "TASKQ_KEY_LAYOUT": "queue", "TASKQ_HEARTBEAT_TIMEOUT": "1"}
    try:
        b = old.backend
        caps = (1000, 1000, 10, 60_000)
        b.heartbeat("dead-worker", 60_000)
        failed = old.tasks["boom"].delay()
        _, rows = b.settle_claim("dead-worker", 1, [], ["b"], [], caps)
        outcome = [failed.id, str(rows[0][1]), "fail", b"\x80", 0, 60_000, 0, 1, "le_1", ""]
        settled, _ = b.settle_claim("dead-worker", 0, [outcome], ["b"], [], caps)
        assert settled == [1] and failed.state == JobState.FAILED
        queued = [old.tasks["add"].delay(1, 2), old.tasks["mul"].delay(4, 4)]
        active = old.tasks["mul"].delay(2, 3)
        _, rows = b.settle_claim("dead-worker", 1, [], ["b"], [], caps)
        assert [r[0].decode() for r in rows] == [queued[1].id]  # leased, then its worker "dies"
        active_id = queued[1].id
        scheduled = old.tasks["add"].apply_async((5, 5), countdown=1.5)
        add, mul = old.tasks["add"], old.tasks["mul"]
        chain = (add.s(1, 2) | mul.s(10) | add.s(5)).apply_async()  # a workflow over queues a and b
        Scheduler(old, reaper=False).tick()  # the periodic task's first tick
        last_tick = b.cron_last("beat")
        assert last_tick is not None
        enqueued = old.stats().tasks["add"].counters["enqueued"]

        refused = migrate(env)  # the dead worker's heartbeat is still fresh
        assert refused.returncode != 0 and "stop them first" in refused.stderr + refused.stdout
        wait_for(lambda: b.server_time_ms() - dict(b.workers())["dead-worker"] > 1000, 5, what="a stale heartbeat")
        done = migrate(env)
        assert done.returncode == 0, done.stderr
        assert "job(s)" in done.stdout

        r = redis.Redis.from_url(redis_url)
        left = {k.decode() for k in r.scan_iter(match="{" + namespace + "}:*")}
        assert left == {f"{{{namespace}}}:layout", f"{{{namespace}}}:slots"}
        assert new.slots.queue("b").job_state(failed.id) == "failed"
        assert new.stats().tasks["add"].counters["enqueued"] == enqueued
        assert new.slots.queue("beat").cron_last("beat") == last_tick

        start_worker("tests.apps.sharded:app", "-Q", "a,b", env=env)
        assert new.job(queued[0].id).result(timeout=20) == 3
        assert new.job(active.id).result(timeout=20) == 6
        assert new.job(active_id).result(timeout=20) == 16  # reaped in its slot and run again
        assert new.job(active_id).info().lost_count == 1
        assert new.job(scheduled.id).result(timeout=20) == 10
        assert new.job(chain.id).result(timeout=20) == 35  # its links now cross the two slots
        assert new.slots.queue("a").job_record(chain.id).workflow_queues == ("b",)
        assert [i.id for i in new.control.failed_jobs()] == [failed.id]
        assert new.control.requeue_failed() == 1
        assert new.job(failed.id).wait(timeout=20) == JobState.FAILED
        info = new.job(failed.id).info()
        assert info.requeue_count == 1 and len(info.errors) == 2  # ran again after the requeue
        again = migrate(env)
        assert again.returncode == 0 and "0 job(s)" in again.stdout
    finally:
        for app in (new, old):
            for s in [*app.slots.all(), app.backend]:
                s.delete_namespace()
            app.close()
