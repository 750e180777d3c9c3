"""Stats, the workers registry and the metrics endpoint, against a real
server: jobs are driven through every outcome by in-process consumers."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from taskq import JobState, TaskQ
from taskq.metrics import render_prometheus, serve_metrics
from taskq.stats import COUNTERS
from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig
from taskq.worker.executor import ClaimedJob
from taskq.worker.outcome import Outcome
from tests.apps.obs import build
from tests.conftest import needs_ipv6, wait_for
from tests.unit.test_metrics_format import parse_exposition, value_of


@pytest.fixture
def obs(redis_url: str, namespace: str) -> Iterator[TaskQ]:
    app = build(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


@pytest.fixture
def consumers(obs: TaskQ) -> Iterator[Callable[..., Consumer]]:
    """Registered in-process consumers (prefetch 1: every claim leases one job)."""
    made: list[Consumer] = []

    def make(worker_id: str, queues: tuple[str, ...] = ("default",)) -> Consumer:
        c = Consumer(obs, WorkerConfig(concurrency=1, queues=queues, prefetch=1, block_timeout=0.1), worker_id)
        obs.backend.register_tasks({n: obs.options_for(n).max_attempts for n in obs.tasks})
        c.heartbeat.beat()
        made.append(c)
        return c

    yield make
    for c in made:
        c.stopping.set()
        c.shutdown()


def drain(c: Consumer, done: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "jobs did not finish in time"
        c.step()


def counters(**kw: int) -> dict[str, int]:
    return {c: kw.get(c, 0) for c in COUNTERS}


def test_every_outcome_is_counted_per_task_queue_and_minute(obs, consumers, tmp_path) -> None:
    c1, c2 = consumers("w1"), consumers("w2")
    h1, h2 = obs.tasks["hold"].delay(0), obs.tasks["hold"].delay(0)
    c1.step()  # leases h1, which takes the resource
    assert h1.state == JobState.ACTIVE
    c2.step()  # claims h2 while h1 holds the resource: skipped
    assert h2.state == JobState.SKIPPED
    ok = [obs.tasks["ok"].delay(i) for i in range(3)]
    boom = obs.tasks["boom"].delay()
    flaky = obs.tasks["flaky"].delay(str(tmp_path / "flaky"))
    slow = obs.tasks["slow"].delay()
    bounce = obs.tasks["bounce"].delay(str(tmp_path / "bounce"))
    cancelled = obs.tasks["ok"].apply_async((0,), queue="parked")
    assert cancelled.cancel() == "cancelled"
    obs.tasks["ok"].apply_async((0,), queue="parked").retract()
    jobs = [h1, *ok, boom, flaky, slow, bounce]
    drain(c1, lambda: all(j.state.finished for j in jobs))
    assert [j.state for j in jobs] == [JobState.SUCCEEDED] * 4 + [JobState.FAILED, JobState.SUCCEEDED,
                                                                   JobState.FAILED, JobState.SUCCEEDED]

    s = obs.stats()
    assert {n: t.counters for n, t in s.tasks.items()} == {
        "hold": counters(enqueued=2, started=1, succeeded=1, skipped=1),
        "ok": counters(enqueued=5, started=3, succeeded=3, cancelled=1, retracted=1),
        "boom": counters(enqueued=1, started=1, failed=1),
        "flaky": counters(enqueued=1, started=2, retried=1, succeeded=1),
        "slow": counters(enqueued=1, started=1, failed=1, timed_out=1),
        "bounce": counters(enqueued=1, started=2, requeued=1, succeeded=1),
    }
    assert {n: q.counters for n, q in s.queues.items()} == {
        "default": counters(enqueued=9, started=10, succeeded=6, failed=2, retried=1, timed_out=1, skipped=1,
                            requeued=1),
        "parked": counters(enqueued=2, cancelled=1, retracted=1),
    }
    # every run that ended in an outcome is timed; skips and requeues are not
    assert {n: t.run_time.count for n, t in s.tasks.items()} == {
        "hold": 1, "ok": 3, "boom": 1, "flaky": 2, "slow": 1, "bounce": 1}
    slow_rt = s.tasks["slow"].run_time
    assert slow_rt.sum_ms >= 200  # interrupted by its 0.2 s timeout
    assert dict(slow_rt.buckets)[100.0] == 0 and slow_rt.p50_ms is not None and slow_rt.p50_ms >= 250
    for t in s.tasks.values():
        assert t.run_time.buckets[-1][1] == t.run_time.count
    # the minute buckets hold the same totals, and the hour's failures
    hour = {c: sum(counts.get(c, 0) for _, counts in s.throughput) for c in COUNTERS}
    assert hour == {c: sum(t.counters[c] for t in s.tasks.values()) for c in COUNTERS}
    assert len(s.throughput) == 60 and s.throughput[-1][0] == s.now_ms // 60_000 * 60
    assert s.failures_last_hour == 2
    assert (s.ready, s.scheduled, s.active, s.stalled, s.failed, s.worker_count) == (0, 0, 0, 0, 2, 2)
    assert json.loads(json.dumps(s.as_dict(), allow_nan=False)) == s.as_dict()


def test_histogram_and_prometheus_buckets_from_exact_durations(obs) -> None:
    b = obs.backend
    for i in range(6):
        obs.tasks["ok"].delay(i)
    caps = (1000, 1000, 10, 60_000)
    _, rows = b.settle_claim("wx", 6, [], ["default"], [], caps)
    claimed = [ClaimedJob(r) for r in rows]
    durations = [0.5, 3, 30, 30, 700, 400_000]
    outs = [Outcome(j.id, j.token, "ok", ttl_ms=60_000, duration_ms=d).fields() for j, d in zip(claimed, durations)]
    settled, _ = b.settle_claim("wx", 0, outs, ["default"], [], caps)
    assert settled == [1] * 6

    s = obs.stats()
    rt = s.tasks["ok"].run_time
    assert rt.count == 6 and rt.sum_ms == 0 + 3 + 30 + 30 + 700 + 400_000  # whole ms per run
    cumulative = dict(rt.buckets)
    assert (cumulative[1.0], cumulative[2.0], cumulative[5.0], cumulative[50.0], cumulative[1000.0],
            cumulative[300_000.0], cumulative[float("inf")]) == (1, 1, 2, 4, 5, 5, 6)
    assert (rt.p50_ms, rt.quantile(0.8), rt.p95_ms) == (50, 1000, float("inf"))

    fam = parse_exposition(render_prometheus(s, obs.workers()))
    bucket = lambda le: value_of(fam, "taskq_job_duration_seconds_bucket", task="ok", le=le)  # noqa: E731
    assert (bucket("0.001"), bucket("0.005"), bucket("0.05"), bucket("1"), bucket("300"), bucket("+Inf")) == (
        1, 2, 4, 5, 5, 6)
    assert value_of(fam, "taskq_job_duration_seconds_sum", task="ok") == pytest.approx(400.763)
    assert value_of(fam, "taskq_jobs_total", task="ok", outcome="succeeded") == 6


def test_queue_depth_levels_latency_and_indexes(obs, consumers) -> None:
    first = obs.tasks["ok"].apply_async((1,), queue="q1")
    obs.tasks["ok"].apply_async((2,), queue="q1")
    obs.tasks["ok"].apply_async((3,), queue="q1", priority=5)
    obs.tasks["ok"].apply_async((4,), delay=600)
    obs.tasks["ok"].apply_async((5,), queue="q2").stall()
    worker = consumers("w1", queues=("q3",))
    obs.tasks["nap"].apply_async((0,), queue="q3")
    worker.step()  # leases it (held, not yet run)
    assert len(worker.held) == 1

    created = int(obs.backend.job_hash(first.id)["c"])
    s = obs.stats(now_ms=created + 5_250)
    q1 = s.queues["q1"]
    assert (q1.depth, q1.levels, q1.latency_s) == (3, {0: 2, 5: 1}, 5.25)
    assert (s.queues["q2"].depth, s.queues["q2"].latency_s) == (0, 0.0)
    assert (s.ready, s.scheduled, s.active, s.stalled, s.failed) == (3, 1, 1, 1, 0)
    assert s.as_dict()["queues"]["q1"]["levels"] == {"5": 1, "0": 2}


def test_throughput_window_is_the_last_sixty_minutes(obs) -> None:
    job = obs.tasks["ok"].delay(1)
    created = int(obs.backend.job_hash(job.id)["c"])
    minute = created // 60_000 * 60
    assert obs.stats(now_ms=created).throughput[-1] == (minute, {"enqueued": 1})
    later = obs.stats(now_ms=created + 59 * 60_000).throughput
    assert later[0] == (minute, {"enqueued": 1}) and sum(len(c) for _, c in later[1:]) == 0
    assert all(not counts for _, counts in obs.stats(now_ms=created + 60 * 60_000).throughput)


def test_workers_registry_lists_a_consumer_and_the_jobs_it_holds(obs, consumers) -> None:
    c = consumers("w1")
    (w,) = obs.workers()
    assert (w.id, w.pid, w.ppid, w.queues, w.concurrency, w.jobs) == ("w1", os.getpid(), os.getppid(),
                                                                      ("default",), 1, ())
    assert w.host and 0 <= w.heartbeat_age_s < 30 and w.started_at == pytest.approx(time.time(), abs=60)
    job = obs.tasks["nap"].delay(0)
    c.step()
    assert obs.workers()[0].jobs == (job.id,)
    assert obs.stats().active == 1
    drain(c, lambda: job.state.finished)
    c.stopping.set()
    c.shutdown()
    assert obs.workers() == []


def test_a_worker_whose_details_expired_is_still_listed(obs) -> None:
    obs.backend.heartbeat("ghost", 1, {"host": "gone"})  # details expire after 1 ms
    wait_for(lambda: not obs.backend.worker_details(["ghost"])[0][0], what="details to expire")
    (w,) = obs.workers()
    assert (w.id, w.host, w.pid, w.ppid, w.queues, w.jobs) == ("ghost", "", None, None, (), ())


def _get(url: str) -> tuple[int, str, str]:
    try:
        with urllib.request.urlopen(url, timeout=10) as resp:
            return resp.status, resp.headers["Content-Type"], resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.headers["Content-Type"], err.read().decode()


def test_metrics_endpoint_serves_the_exposition_and_404_elsewhere(obs, consumers) -> None:
    c = consumers("w1")
    job = obs.tasks["ok"].delay(1)
    drain(c, lambda: job.state.finished)
    server = serve_metrics(obs, 0)
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        code, ctype, body = _get(base + "/metrics")
        assert code == 200 and ctype.startswith("text/plain; version=0.0.4")
        fam = parse_exposition(body)
        assert value_of(fam, "taskq_jobs_total", task="ok", outcome="succeeded") == 1
        assert value_of(fam, "taskq_job_duration_seconds_count", task="ok") == 1
        assert value_of(fam, "taskq_workers") == 1
        assert _get(base + "/")[0] == 404
        assert _get(base + "/metricsx")[0] == 404
    finally:
        server.shutdown()
        server.server_close()


@needs_ipv6
@pytest.mark.parametrize("host, clients", [("::1", ["[::1]"]), ("::", ["[::1]", "127.0.0.1"])])
def test_metrics_endpoint_on_ipv6(obs, host, clients) -> None:
    obs.tasks["ok"].delay(1)
    server = serve_metrics(obs, 0, host)
    try:
        for client in clients:
            code, _, body = _get(f"http://{client}:{server.server_address[1]}/metrics")
            assert code == 200 and value_of(parse_exposition(body), "taskq_queue_depth", queue="default") == 1
    finally:
        server.shutdown()
        server.server_close()


def test_stats_of_an_empty_namespace(obs: TaskQ) -> None:
    s = obs.stats()
    assert (s.tasks, s.queues, s.ready, s.worker_count, s.failures_last_hour) == ({}, {}, 0, 0, 0)
    d: dict[str, Any] = s.as_dict()
    assert d["tasks"] == {} and len(d["throughput"]) == 60


def test_each_queue_reports_its_jobs_in_and_out_over_the_last_minute(capp) -> None:
    # the jobs below are enqueued in one minute of the server's clock, and `now` is in it too
    wait_for(lambda: capp.backend.server_time_ms() % 60_000 < 50_000, 40, 0.05, "a minute with 10 s left")
    capp.tasks["noop"].map(range(3))
    capp.tasks["noop"].map(range(2), queue="mail")
    now = capp.backend.server_time_ms()
    current = capp.stats(now_ms=now)  # the minute is not complete yet
    assert (current.queues["default"].rate_in, current.queues["mail"].rate_in) == (0, 0)
    later = capp.stats(now_ms=now + 60_000)  # that minute is now the last complete one
    assert (later.queues["default"].rate_in, later.queues["mail"].rate_in) == (3, 2)
    assert later.queues["default"].rate_out == 0
    assert later.throughput[-2][1]["enqueued"] == 5  # namespace-wide counters are unchanged
    assert later.as_dict()["queues"]["mail"]["per_minute"] == {"in": 2, "out": 0}
