"""Failovers with real processes: a Cluster master and a Sentinel master
SIGKILLed mid-run. Workers and the producer carry on without a restart,
no durable job the server acknowledged is lost, and every job finishes.
With its replica stopped, a durable enqueue raises ``NotDurable``."""

from __future__ import annotations

import os
import signal

import pytest

from taskq import NotDurable
from tests.apps.basic import build
from tests.conftest import wait_for
from tests.scaleout.failover import DurableProducer, assert_every_acknowledged_job_finishes
from tests.scaleout.servers import client


def run_through_failover(url, namespace, start_worker, victim, failed_over, layout="namespace"):
    """Durable jobs flow while ``victim`` (the master) is SIGKILLed; once a
    replica took over, the victim restarts (and rejoins as a replica, so
    durable enqueues are confirmed by a replica again)."""
    app = build(url, namespace, enqueue_retry_timeout=30, durable_timeout=2, key_layout=layout)
    workers = [start_worker("tests.apps.basic:app", "-c", "1",
                            env={"TASKQ_REDIS_URL": url, "TASKQ_NAMESPACE": namespace, "TASKQ_HEARTBEAT_TIMEOUT": "3",
                                 "TASKQ_KEY_LAYOUT": layout})
               for _ in range(2)]
    producer = DurableProducer(app)
    try:
        producer.start()
        wait_for(lambda: len(producer.acknowledged) >= 100, 30, what="durable jobs before the kill")
        victim.kill()
        wait_for(failed_over, 30, interval=0.1, what="a replica to be promoted")
        victim.start()
        count = len(producer.acknowledged)
        try:
            wait_for(lambda: len(producer.acknowledged) >= count + 100, 45, what="durable jobs after the failover")
        except AssertionError:
            raise AssertionError(f"{producer.errors[-3:]}") from None
        producer.stop()
        assert_every_acknowledged_job_finishes(app, producer.acknowledged)
        assert all(wp.proc.poll() is None for wp in workers), "a worker exited: " + workers[0].log()[-2000:]
        return producer
    finally:
        producer.stop()
        try:
            for b in {id(x): x for x in [*app.slots.all(), app.backend]}.values():
                b.delete_namespace()
        finally:
            app.close()


def test_cluster_master_killed_mid_run_loses_no_acknowledged_durable_job(replicated_cluster, start_worker, namespace):
    key = "{" + namespace + "}:"
    port = replicated_cluster.owner_port(key)
    victim = replicated_cluster.node(port)
    producer = run_through_failover(
        replicated_cluster.url, namespace, start_worker, victim,
        lambda: replicated_cluster.owner_port(key) != port)
    assert len(producer.acknowledged) >= 200


def test_cluster_master_of_a_queue_slot_killed_mid_run_with_the_queue_layout(replicated_cluster, start_worker,
                                                                            namespace):
    """The same with a slot per queue: the master of the queue's slot
    ``{ns:default}`` dies; the namespace's registry may live elsewhere."""
    key = "{" + namespace + ":default}:"
    port = replicated_cluster.owner_port(key)
    producer = run_through_failover(
        replicated_cluster.url, namespace, start_worker, replicated_cluster.node(port),
        lambda: replicated_cluster.owner_port(key) != port, layout="queue")
    assert len(producer.acknowledged) >= 200


def test_sentinel_master_killed_mid_run_loses_no_acknowledged_durable_job(sentinel_group, start_worker, namespace):
    port = sentinel_group.master_port()
    producer = run_through_failover(
        sentinel_group.url, namespace, start_worker, sentinel_group.server(port),
        lambda: sentinel_group.master_port() != port)
    assert len(producer.acknowledged) >= 200


def test_sentinel_durable_enqueue_with_its_replica_cut_off_raises_not_durable(sentinel_group, namespace):
    app = build(sentinel_group.url, namespace, durable_timeout=0.3)
    replica = next(s for s in sentinel_group.servers if s.port != sentinel_group.master_port())
    try:
        plain = app.tasks["add"].delay(0, 0)  # the hot path's own connections reach the master too
        assert client(sentinel_group.master_port()).exists(app.backend.keys.job(plain.id)) == 1
        assert app.tasks["add"].apply_async((1, 1), durable=True).created  # confirmed by the replica
        os.kill(replica.pid or 0, signal.SIGSTOP)  # a replica that lags (its link cut)
        try:
            with pytest.raises(NotDurable) as err:
                app.tasks["add"].apply_async((2, 2), durable=True)
        finally:
            os.kill(replica.pid or 0, signal.SIGCONT)
        assert err.value.job_id and app.job(err.value.job_id).state.value == "queued"  # written, not confirmed
        assert "durable_replicas" in str(err.value)
        wait_for(lambda: client(replica.port).info("replication").get("master_link_status") == "up",
                 what="the replica back in sync")
        assert app.tasks["add"].apply_async((3, 3), durable=True).created
    finally:
        app.backend.delete_namespace()
        app.close()
