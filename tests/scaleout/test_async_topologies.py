"""The asyncio API on ``redis+cluster://`` and ``redis+sentinel://`` URLs:
awaited enqueues, result waits and job control reach the master (of the
job's slot), follow a slot that moved (``MOVED``) and a master that failed
over, with no restart."""

from __future__ import annotations

import asyncio

from taskq import JobState
from tests.apps.basic import build
from tests.conftest import wait_for
from tests.scaleout.test_cluster import move_slot
from tests.scaleout.test_cluster_queues import queues_on_each_master


def run(app, coro):
    async def main():
        try:
            return await coro
        finally:
            await app.aclose()
    return asyncio.run(main())


def serve(app, queues, seconds=20.0):
    """Run jobs with an in-process consumer until every queue is empty."""
    from taskq.worker.child import Consumer
    from taskq.worker.config import WorkerConfig

    c = Consumer(app, WorkerConfig(concurrency=1, block_timeout=0.05, prefetch=10, queues=tuple(queues)), "w1")
    for b, _ in c.groups:
        b.register_tasks({n: app.options_for(n).max_attempts for n in app.tasks})
    c.heartbeat.beat()
    return c


def test_awaited_calls_on_a_cluster_reach_each_queues_master_and_follow_a_moved_slot(cluster3):
    app = build(cluster3.url, "aioq", key_layout="queue")
    queues = queues_on_each_master(cluster3, "aioq")
    try:
        async def enqueue():
            return [await app.tasks["add"].aapply_async((i, 1), queue=q) for i, q in enumerate(queues)]
        jobs = run(app, enqueue())
        for job, q, m in zip(jobs, queues, cluster3.masters):
            assert cluster3.owner_port(app.slots.queue(q).keys.job(job.id)) == m.port
        c = serve(app, queues)
        wait_for(lambda: c.step() or all(j.state.finished for j in jobs), 20, what="the jobs to run")

        async def results():
            return [await j.aresult(timeout=5) for j in jobs] + [await app.job(jobs[1].id).astate()]
        assert run(app, results()) == [1, 2, 3, JobState.SUCCEEDED]

        prefix = "{aioq:" + queues[0] + "}:"
        move_slot(cluster3, prefix, cluster3.masters[0].port or 0, cluster3.masters[1].port or 0)
        wait_for(lambda: cluster3.owner_port(prefix) == cluster3.masters[1].port, what="the slot to move")

        async def after_move():
            job = await app.tasks["add"].aapply_async((5, 5), queue=queues[0])  # MOVED: followed
            state = await job.astate()
            return job, state
        moved, state = run(app, after_move())
        assert state == JobState.QUEUED
        assert cluster3.owner_port(app.slots.queue(queues[0]).keys.job(moved.id)) == cluster3.masters[1].port
    finally:
        for b in [*app.slots.all(), app.backend]:
            b.delete_namespace()
        app.close()


def test_awaited_calls_on_sentinel_follow_a_failover(sentinel_group, namespace):
    app = build(sentinel_group.url, namespace, enqueue_retry_timeout=30)
    try:
        first = run(app, app.tasks["add"].adelay(1, 1))
        assert run(app, first.astate()) == JobState.QUEUED
        old = sentinel_group.master_port()
        sentinel_group.server(old).kill()
        wait_for(lambda: sentinel_group.master_port() != old, 30, interval=0.1, what="a replica to be promoted")
        second = run(app, app.tasks["add"].adelay(2, 2))  # retried until the new master answers
        c = serve(app, ["default"])
        wait_for(lambda: c.step() or (first.state.finished and second.state.finished), 30, what="the jobs to run")
        assert run(app, second.aresult(timeout=5)) == 4
    finally:
        app.backend.delete_namespace()
        app.close()
