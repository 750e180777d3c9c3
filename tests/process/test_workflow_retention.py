"""A 10,000-member chord's state expires with the jobs' retention: the
server's memory is back at its baseline once the TTL passed."""

from __future__ import annotations

import time
from collections.abc import Callable

from taskq import JobState, chord
from tests.conftest import WorkerProcess, wait_for
from tests.workflows import flowapp

APP = "tests.workflows.flowapp:app"


def test_chord_state_expires_with_the_jobs_retention(redis_url: str, namespace: str,
                                                     start_worker: Callable[..., WorkerProcess]) -> None:
    app = flowapp.build(redis_url, namespace, succeeded_ttl=3, failed_ttl=3)
    env = {"TASKQ_SUCCEEDED_TTL": "3", "TASKQ_FAILED_TTL": "3"}
    try:
        b = app.backend
        start_worker(APP, "-c", "2", env=env)
        warm = chord([app.tasks["member"].s(i) for i in range(10)], app.tasks["collect"].s()).delay()
        assert warm.wait(timeout=30) == JobState.SUCCEEDED  # counters and indexes exist from here on

        def settled_memory() -> int:
            """The namespace's keys' memory (MEMORY USAGE summed), after trimming the finished indexes."""
            b.trim_finished(3000, 3000, 100_000)
            return sum(b.client.memory_usage(k) or 0 for k in b.client.keys(b.keys.pattern))

        def server_memory() -> int:
            return int(b.client.info("memory")["used_memory"])

        wait_for(lambda: b.client.dbsize() and not b.client.keys(b.keys.scan_pattern("j:")), 20, what="warm-up expiry")
        baseline, server_base = settled_memory(), server_memory()
        c = chord([app.tasks["member"].s(i) for i in range(10_000)], app.tasks["collect"].s()).delay()
        assert c.wait(timeout=120) == JobState.SUCCEEDED
        assert len(c.result(timeout=1)[0]) == 10_000
        peak, server_peak = settled_memory(), server_memory()
        assert peak - baseline > 1_000_000  # the jobs were there
        deadline = time.monotonic() + 30
        wait_for(lambda: not b.client.keys(b.keys.scan_pattern("j:")), 30, what="the jobs' expiry")
        for prefix in ("dp:", "dv:", "wm:", "r:"):
            assert not b.client.keys(b.keys.scan_pattern(prefix)), prefix
        after = settled_memory()
        assert after - baseline < 4096, (baseline, peak, after)  # a few counters more, nothing per job
        # the server as a whole gives back most of it (the allocator keeps some pages)
        assert server_memory() - server_base < (server_peak - server_base) / 4
        assert time.monotonic() < deadline
    finally:
        app.backend.delete_namespace()
        app.close()
