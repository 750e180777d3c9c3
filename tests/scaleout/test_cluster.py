"""taskq on a Redis/Valkey Cluster of three masters with the one-slot key
layout (``key_layout="namespace"``): each namespace lives in its own slot
(``{ns}``), so namespaces spread over the masters; a client given any node
finds the slot's master and follows it when the slot moves. The queue
layout, the default on a cluster URL: ``test_cluster_queues.py``."""

from __future__ import annotations

import time

from taskq import JobState
from tests.apps.basic import build
from tests.conftest import drain, wait_for
from tests.scaleout.servers import LocalCluster, client, job_call_shares


def namespaces_on_each_master(cluster: LocalCluster, tag: str) -> list[str]:
    """One namespace name per master, in the order of ``cluster.masters``."""
    chosen: dict[int, str] = {}
    i = 0
    while len(chosen) < len(cluster.masters):
        name = f"{tag}{i}"
        chosen.setdefault(cluster.owner_port("{" + name + "}:"), name)
        i += 1
    return [chosen[m.port or 0] for m in cluster.masters]


def test_namespaces_land_on_the_master_of_their_slot(cluster3):
    names = namespaces_on_each_master(cluster3, "spread")
    for master, ns in zip(cluster3.masters, names):
        app = build(cluster3.url, ns, key_layout="namespace")
        try:
            job = app.tasks["add"].delay(1, 2)
            assert job.state == JobState.QUEUED
            assert client(master.port).exists(app.backend.keys.job(job.id)) == 1
            others = [m for m in cluster3.masters if m is not master]
            assert all(client(m.port).dbsize() == 0 or not client(m.port).exists(app.backend.keys.job(job.id))
                       for m in others)
        finally:
            app.backend.delete_namespace()
            app.close()


def test_a_url_naming_another_node_reaches_the_slot_master(cluster3):
    ns = namespaces_on_each_master(cluster3, "far")[0]
    elsewhere = cluster3.masters[1]  # not the namespace's master
    app = build(f"redis+cluster://127.0.0.1:{elsewhere.port}", ns, key_layout="namespace")
    try:
        jobs = [app.tasks["add"].delay(i, 1) for i in range(5)]
        drain(app, jobs)
        assert [j.result(timeout=5) for j in jobs] == [i + 1 for i in range(5)]
        assert app.backend.info("server")["tcp_port"] == cluster3.masters[0].port
    finally:
        app.backend.delete_namespace()
        app.close()


def move_slot(cluster: LocalCluster, key: str, source: int, target: int) -> None:
    """Move ``key``'s slot (and its keys) from the master at ``source`` to ``target``."""
    src, dst = client(source), client(target)
    slot = int(src.execute_command("CLUSTER", "KEYSLOT", key))
    src_id, dst_id = (c.execute_command("CLUSTER", "MYID").decode() for c in (src, dst))
    dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", src_id)
    src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", dst_id)
    while keys := src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, 100):
        src.execute_command("MIGRATE", "127.0.0.1", target, "", 0, 5000, "KEYS", *keys)
    for c in (dst, src, *(client(m.port) for m in cluster.masters)):
        c.execute_command("CLUSTER", "SETSLOT", slot, "NODE", dst_id)


def test_clients_follow_a_slot_moved_to_another_master(cluster3):
    ns = namespaces_on_each_master(cluster3, "moving")[0]
    source, target = cluster3.masters[0].port or 0, cluster3.masters[2].port or 0
    app = build(cluster3.url, ns, key_layout="namespace")
    try:
        before = app.tasks["add"].delay(2, 2)  # its connections now point at the source
        move_slot(cluster3, "{" + ns + "}:", source, target)
        wait_for(lambda: cluster3.owner_port("{" + ns + "}:") == target, what="the slot to move")
        route = app.backend.topology.route
        assert route is not None and route.generation == 0
        after = app.tasks["add"].delay(3, 3)  # MOVED: followed, not raised
        assert route.generation >= 1 and route.address() == ("127.0.0.1", target)
        assert client(target).exists(app.backend.keys.job(after.id)) == 1
        drain(app, [before, after])
        assert (before.result(timeout=5), after.result(timeout=5)) == (4, 6)
    finally:
        app.backend.delete_namespace()
        app.close()


def test_ten_thousand_jobs_on_three_masters_with_worker_processes(cluster3, start_worker, tmp_path):
    """Three namespaces, one per master, 10,002 jobs, a worker process per
    namespace: every job completes, and each master ran a third of the
    job calls (``INFO commandstats``)."""
    names = namespaces_on_each_master(cluster3, "bulk")
    for m in cluster3.masters:
        client(m.port).config_resetstat()
    apps = [build(cluster3.url, ns, key_layout="namespace") for ns in names]
    try:
        for app in apps:
            app.enqueue_many(("add", (i, 1), {}) for i in range(3334))
        # --prefetch 1: one settle-and-claim call per job, so calls count jobs
        workers = [start_worker("tests.apps.basic:app", "-c", "1", "--prefetch", "1",
                                env={"TASKQ_REDIS_URL": cluster3.url, "TASKQ_NAMESPACE": ns,
                                     "TASKQ_KEY_LAYOUT": "namespace"}) for ns in names]
        deadline = time.monotonic() + 120
        for app in apps:
            wait_for(lambda app=app: app.stats().tasks["add"].counters["succeeded"] >= 3334, max(deadline - time.monotonic(), 1),
                     interval=0.2, what="every job to succeed")
        for wp in workers:
            wp.stop()
        shares = job_call_shares(cluster3)
        assert all(abs(s - 1 / 3) <= 0.10 for s in shares), shares
    finally:
        for app in apps:
            app.backend.delete_namespace()
            app.close()
