"""The queue key layout on a cluster of three masters: the queues of one
namespace spread over the masters (a slot per queue), workers serving
several queues claim from each queue's master, and the job calls split a
third per master."""

from __future__ import annotations

import time

import taskq
from taskq import JobState
from tests.apps.basic import build
from tests.conftest import wait_for
from tests.scaleout.servers import LocalCluster, client, job_call_shares


def queues_on_each_master(cluster: LocalCluster, namespace: str, per_master: int = 1) -> list[str]:
    """``per_master`` queue names per master whose slot ``{ns:queue}`` it serves, master by master."""
    chosen: dict[int, list[str]] = {m.port or 0: [] for m in cluster.masters}
    i = 0
    while any(len(v) < per_master for v in chosen.values()):
        name = f"q{i}"
        owner = chosen[cluster.owner_port("{" + f"{namespace}:{name}" + "}:")]
        if len(owner) < per_master:
            owner.append(name)
        i += 1
    return [q for m in cluster.masters for q in chosen[m.port or 0]]


def test_the_queues_of_one_namespace_land_on_three_masters(cluster3):
    app = build(cluster3.url, "spreadq", key_layout="queue")
    queues = queues_on_each_master(cluster3, "spreadq")
    try:
        jobs = [app.tasks["add"].apply_async((i, 1), queue=q) for i, q in enumerate(queues)]
        for master, q, job in zip(cluster3.masters, queues, jobs):
            key = app.slots.queue(q).keys.job(job.id)
            assert client(master.port).exists(key) == 1
            assert cluster3.owner_port(key) == master.port
            assert job.state == JobState.QUEUED
        from taskq.worker.child import Consumer
        from taskq.worker.config import WorkerConfig

        c = Consumer(app, WorkerConfig(concurrency=1, block_timeout=0.05, prefetch=1, queues=tuple(queues)), "w1")
        for b, _ in c.groups:
            b.register_tasks({n: app.options_for(n).max_attempts for n in app.tasks})
        c.heartbeat.beat()
        wait_for(lambda: c.step() or all(j.state.finished for j in jobs), 20, what="the jobs to run")
        assert [j.result(timeout=5) for j in jobs] == [1, 2, 3]
        assert sorted(app.slots.queues()) == sorted(queues)
        assert app.stats().tasks["add"].counters["succeeded"] == 3
    finally:
        for b in [*app.slots.all(), app.backend]:
            b.delete_namespace()
        app.close()


def test_ten_thousand_jobs_over_six_queues_with_two_worker_processes(cluster3, start_worker):
    """One namespace, six queues (two per master), 10,002 jobs and two worker
    processes serving all six: every job completes and each master ran a
    third of the job calls."""
    ns = "bulkq"
    app = build(cluster3.url, ns, key_layout="queue")
    queues = queues_on_each_master(cluster3, ns, per_master=2)
    try:
        for q in queues:
            app.enqueue_many((("add", (i, 1), {}) for i in range(1667)), queue=q)
        for m in cluster3.masters:
            client(m.port).config_resetstat()
        env = {"TASKQ_REDIS_URL": cluster3.url, "TASKQ_NAMESPACE": ns, "TASKQ_KEY_LAYOUT": "queue"}
        # --prefetch 1: one settle-and-claim call per job, so calls count jobs
        workers = [start_worker("tests.apps.basic:app", "-c", "1", "--prefetch", "1", "-Q", ",".join(queues),
                                env=env) for _ in range(2)]
        deadline = time.monotonic() + 180
        wait_for(lambda: app.stats().tasks["add"].counters["succeeded"] >= 6 * 1667,
                 max(deadline - time.monotonic(), 1), interval=0.5, what="every job to succeed")
        for wp in workers:
            wp.stop()
        shares = job_call_shares(cluster3)
        assert all(abs(s - 1 / 3) <= 0.10 for s in shares), shares
        assert sum(q.depth for q in app.control.queues()) == 0
    finally:
        for b in [*app.slots.all(), app.backend]:
            b.delete_namespace()
        app.close()


def test_a_workflow_over_queues_on_three_masters(cluster3, start_worker):
    """A chain and a group whose jobs are on three masters: each step's end
    reaches the next one's master through its slot's outbox; a cancel
    reaches the jobs on the other masters."""
    ns = "flowq"
    app = build(cluster3.url, ns, key_layout="queue")
    q0, q1, q2 = queues_on_each_master(cluster3, ns)
    add = app.tasks["add"]
    try:
        chain = (add.s(1, 1).set(queue=q0) | add.s(2).set(queue=q1) | add.s(3).set(queue=q2)).apply_async()
        group = taskq.group(add.s(1, 1).set(queue=q0), add.s(2, 2).set(queue=q1),
                            add.s(3, 3).set(queue=q2)).apply_async()
        held = (add.s(1, 1).set(queue=q1, countdown=3600) | add.s(1).set(queue=q2)).apply_async()
        for jid in chain.members():
            owner = cluster3.owner_port(app.slots.queue(app.job(jid).info().queue).keys.job(jid))
            assert owner == cluster3.masters[[q0, q1, q2].index(app.job(jid).info().queue)].port
        env = {"TASKQ_REDIS_URL": cluster3.url, "TASKQ_NAMESPACE": ns, "TASKQ_KEY_LAYOUT": "queue"}
        start_worker("tests.apps.basic:app", "-Q", ",".join([q0, q1, q2]), env=env)
        assert chain.result(timeout=30) == 7
        assert [m.value for m in group.results(timeout=30)] == [2, 4, 6]
        assert held.cancel() == "cancelled"
        assert held.wait(timeout=30) == JobState.CANCELLED
        wait_for(lambda: all(app.job(m).state == JobState.CANCELLED for m in held.members()), 30,
                 what="the cancel to reach the other masters")
    finally:
        for b in [*app.slots.all(), app.backend]:
            b.delete_namespace()
        app.close()
