"""The other long-lived processes across a failover: a standalone
``taskq scheduler``, a ``taskq metrics`` server and a producer's result
waits and ``on_finish`` callbacks, on a Sentinel group and on a Cluster
whose master of the namespace is SIGKILLed mid-run. None restarts; each is
back within ``heartbeat_timeout`` of the promotion (measured, printed)."""

from __future__ import annotations

import os
import time

from taskq import JobState
from tests.apps.basic import build
from tests.conftest import ROOT, wait_for
from tests.scaleout.services import Finishes, ResultWait, free_port, scrape, start_service

HEARTBEAT_TIMEOUT = 3.0
DELAYS = (1.0, 2.5, 4.0, 5.5, 7.0)  # from just before the kill: due during the failover and after it


def run_services_through_failover(url, namespace, start_worker, tmp_path, caplog, victim, failed_over):
    env = {**os.environ, "TASKQ_REDIS_URL": url, "TASKQ_NAMESPACE": namespace, "PYTHONPATH": str(ROOT),
           "TASKQ_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT)}
    app = build(url, namespace, enqueue_retry_timeout=30, durable_timeout=2, heartbeat_timeout=HEARTBEAT_TIMEOUT)
    port = free_port()
    services = [start_service(tmp_path / "scheduler.log", env, "scheduler", "tests.apps.basic:app"),
                start_service(tmp_path / "metrics.log", env, "metrics", "tests.apps.basic:app", "--port", str(port))]
    scheduler, metrics = services

    def logs() -> str:
        return "\n".join(f"--- {s.log_path.name}\n{s.log()[-3000:]}" for s in services)

    try:
        start_worker("tests.apps.basic:app", "-c", "1", "--no-scheduler", env=env)
        assert app.tasks["add"].apply_async((0, 0), countdown=0.2).result(timeout=20) == 0  # the scheduler runs
        wait_for(lambda: scrape(port), 20, what="the metrics server")

        finishes = Finishes()
        start = time.monotonic()
        delayed = [(app.tasks["add"].apply_async((i, 100), countdown=d, durable=True), start + d)
                   for i, d in enumerate(DELAYS)]
        for job, _ in delayed:
            job.on_finish(finishes)
        waited, waited_due = delayed[-2]
        waiter = ResultWait(waited, timeout=40)
        waiter.start()
        wait_for(lambda: app.job(waited.id).state == JobState.SCHEDULED, what="the result wait under way")

        killed = time.monotonic()
        victim.kill()
        wait_for(failed_over, 30, interval=0.02, what="a replica to be promoted")
        promoted = time.monotonic()
        assert any(due > promoted for _, due in delayed), "every delayed job fell due before the promotion"

        wait_for(lambda: scrape(port), 3 * HEARTBEAT_TIMEOUT, interval=0.05, what="metrics after the failover")
        metrics_back = time.monotonic() - promoted
        try:
            wait_for(lambda: len(finishes.fired) == len(delayed), 30, interval=0.05,
                     what="every delayed job's on_finish")
        except AssertionError:
            raise AssertionError(f"fired {finishes.fired}\n{logs()}") from None
        waiter.join(30)
        assert waiter.error is None, f"{waiter.error!r}\n{logs()}"
        assert waiter.value == len(DELAYS) - 2 + 100 and waiter.returned_at is not None

        assert all(state == JobState.SUCCEEDED for state, _ in finishes.fired.values()), finishes.fired
        late = {job.id: finishes.fired[job.id][1] - max(due, promoted) for job, due in delayed}
        result_late = waiter.returned_at - max(waited_due, promoted)
        print(f"\nfailover of {url.split(':')[0]}: promoted {promoted - killed:.2f}s after the kill; "
              f"metrics back {metrics_back:.2f}s after it; delayed jobs finished (on_finish) at most "
              f"{max(late.values()):.2f}s after max(due, promotion); result() {result_late:.2f}s")
        bound = HEARTBEAT_TIMEOUT
        assert metrics_back <= bound, logs()
        assert max(late.values()) <= bound, f"{late}\n{logs()}"
        assert result_late <= bound, logs()
        assert scheduler.proc.poll() is None and metrics.proc.poll() is None, logs()  # never restarted
        lost = [r for r in caplog.records if "event listener lost" in r.getMessage()]
        assert len(lost) <= 1, [r.getMessage() for r in lost]  # logged once, not per retry
    finally:
        for s in services:
            s.stop()
        app.close()


def test_sentinel_master_killed_scheduler_metrics_and_result_waits_carry_on(
        sentinel_group, start_worker, namespace, tmp_path, caplog):
    port = sentinel_group.master_port()
    run_services_through_failover(sentinel_group.url, namespace, start_worker, tmp_path, caplog,
                                  sentinel_group.server(port), lambda: sentinel_group.master_port() != port)


def test_cluster_master_killed_scheduler_metrics_and_result_waits_carry_on(
        replicated_cluster, start_worker, namespace, tmp_path, caplog):
    key = "{" + namespace + ":default}:"  # a cluster URL: a slot per queue; the queue's master dies
    port = replicated_cluster.owner_port(key)
    run_services_through_failover(replicated_cluster.url, namespace, start_worker, tmp_path, caplog,
                                  replicated_cluster.node(port), lambda: replicated_cluster.owner_port(key) != port)
