"""Bulk enqueue sends chunks without waiting (``Backend.enqueue_stream``):
results stay in order and nothing is lost when a reply is."""

from __future__ import annotations

import contextlib
import datetime as dt
import threading

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from taskq import BrokerRefused, ConfigurationError, JobState, PayloadTooLarge, TaskQ
from taskq.app import ENQUEUE_CHUNK
from taskq.embedded import EphemeralServer
from taskq.errors import BrokerUnavailable
from taskq.worker.outcome import Outcome
from tests.conftest import wait_for


@pytest.fixture
def bulk_app(redis_url, namespace):
    # Named connections, so a test can drop exactly this app's connections.
    app = TaskQ("test", f"{redis_url}?client_name=bulk-{namespace}", namespace=namespace, max_payload_bytes=1000)

    @app.task(name="echo")
    def echo(x):
        return x

    yield app
    app.backend.delete_namespace()
    app.close()


def queued_ids(app) -> set[str]:
    return set(app.backend.ready_ids("default", 100_000))


def test_map_over_several_chunks_creates_every_job_in_order(bulk_app):
    n = 2 * ENQUEUE_CHUNK + 500
    jobs = bulk_app.tasks["echo"].map(range(n))
    assert len(jobs) == n and all(j.created for j in jobs)
    assert all(j.task_name == "echo" for j in jobs)
    assert bulk_app.backend.ready_ids("default", n) == [j.id for j in jobs]
    assert [bulk_app.backend.job_hash(jobs[i].id)["d"] for i in (0, n - 1)] == [
        bytes([0x92, 0x91, 0x00, 0x80]), bytes([0x92, 0x91, 0xCD]) + (n - 1).to_bytes(2, "big") + b"\x80"]


def test_map_after_the_script_cache_was_flushed_still_creates_every_job(bulk_app):
    bulk_app.tasks["echo"].delay(0)
    bulk_app.backend.client.script_flush()
    jobs = bulk_app.tasks["echo"].map(range(2 * ENQUEUE_CHUNK + 10))
    assert all(j.created for j in jobs)
    assert bulk_app.backend.ready_ids("default", 100_000)[1:] == [j.id for j in jobs]  # in order


def test_a_bad_item_in_a_later_chunk_raises_and_leaves_the_connection_usable(bulk_app):
    items = [1] * (ENQUEUE_CHUNK + 5) + ["x" * 2000]
    with pytest.raises(PayloadTooLarge) as raised:
        bulk_app.tasks["echo"].map(items)
    assert len(queued_ids(bulk_app)) == ENQUEUE_CHUNK  # the first chunk was enqueued
    # its reply was still awaited when the bad item came: the error has its handles
    enqueued = raised.value.enqueued
    assert [j.id for j in enqueued] == bulk_app.backend.ready_ids("default", 10_000)
    assert all(j.created and j.task_name == "echo" for j in enqueued)
    job = bulk_app.tasks["echo"].delay(7)
    assert job.created and job.state == JobState.QUEUED
    assert bulk_app.backend.ping()


def test_a_connection_lost_mid_stream_sends_the_unanswered_chunks_again(bulk_app, namespace):
    backend = bulk_app.backend
    admin = redis.Redis.from_url(backend.url.split("?")[0])
    n = 3 * ENQUEUE_CHUNK

    def items():
        for i in range(n):
            if i == ENQUEUE_CHUNK + 1:  # chunk 1 is in flight: drop the app's connections
                names = [c for c in admin.client_list() if c.get("name") == f"bulk-{namespace}"]
                assert names
                for c in names:
                    admin.client_kill_filter(_id=c["id"])
            yield ("echo", (i,), {})

    try:
        jobs = bulk_app.enqueue_many(items())
    finally:
        admin.close()
    assert len(jobs) == n and len({j.id for j in jobs}) == n
    assert backend.ready_ids("default", n + 1) == [j.id for j in jobs]  # each once, in order


def test_a_server_refusing_writes_midway_raises_with_the_handles_of_the_jobs_it_took(bulk_app):
    backend = bulk_app.backend
    admin = redis.Redis.from_url(backend.url.split("?")[0])
    n = 5 * ENQUEUE_CHUNK

    def items():
        for i in range(n):
            if i == 2 * ENQUEUE_CHUNK:  # chunk 1 is in flight: once it ran, the server is out of memory
                wait_for(lambda: len(queued_ids(bulk_app)) == 2 * ENQUEUE_CHUNK, what="chunk 1 to run")
                admin.config_set("maxmemory", 1)
            yield ("echo", (i,), {})

    try:
        with pytest.raises(BrokerRefused, match="out of memory") as raised:
            bulk_app.enqueue_many(items())
    finally:
        admin.config_set("maxmemory", 0)
        admin.close()
    enqueued = raised.value.enqueued
    assert len(enqueued) == 2 * ENQUEUE_CHUNK
    assert all(j.created and j.task_name == "echo" for j in enqueued)
    assert [j.id for j in enqueued] == backend.ready_ids("default", n)  # every job in the server, in order


def test_a_server_gone_midway_raises_with_the_handles_of_the_jobs_it_confirmed():
    with EphemeralServer(appendonly=True) as server:  # SHUTDOWN keeps what it ran
        app = TaskQ("test", server.url, namespace="bulkgone", enqueue_retry_timeout=0.3)
        app.task(name="echo")(lambda x: x)
        admin = redis.Redis(port=server.port, retry=Retry(NoBackoff(), 0))

        def items():
            for i in range(4 * ENQUEUE_CHUNK):
                if i == 2 * ENQUEUE_CHUNK:  # chunk 0 confirmed, chunk 1 in flight: once it ran, the server goes
                    wait_for(lambda: len(queued_ids(app)) == 2 * ENQUEUE_CHUNK, what="chunk 1 to run")
                    with contextlib.suppress(redis.ConnectionError):
                        admin.shutdown()
                    wait_for(lambda: server.pid is None, what="the server to stop")
                yield ("echo", (i,), {})

        try:
            with pytest.raises(BrokerUnavailable) as raised:
                app.enqueue_many(items())
            server.start()
            in_server = app.backend.ready_ids("default", 10_000)
        finally:
            admin.close()
            app.close()
    enqueued = [j.id for j in raised.value.enqueued]
    assert len(in_server) == 2 * ENQUEUE_CHUNK
    # chunk 1's reply may be lost with the server: then only chunk 0 is confirmed
    assert len(enqueued) in (ENQUEUE_CHUNK, 2 * ENQUEUE_CHUNK)
    assert enqueued == in_server[:len(enqueued)]


def test_an_error_before_any_chunk_went_through_carries_no_handles(bulk_app):
    with pytest.raises(PayloadTooLarge) as raised:
        bulk_app.tasks["echo"].map([1, "x" * 2000])
    assert raised.value.enqueued == []
    assert queued_ids(bulk_app) == set()


def drop_connections(app: TaskQ, namespace: str) -> None:
    admin = redis.Redis.from_url(app.backend.url.split("?")[0])
    try:
        for c in admin.client_list():
            if c.get("name") == f"bulk-{namespace}":
                admin.client_kill_filter(_id=c["id"])
    finally:
        admin.close()


def test_a_fresh_job_whose_first_send_fails_is_sent_again_once(bulk_app, namespace):
    bulk_app.tasks["echo"].delay(1)  # leaves an idle connection behind
    drop_connections(bulk_app, namespace)
    job = bulk_app.tasks["echo"].delay(2)  # first send fails, never resent as "fresh"
    assert job.created and job.state == JobState.QUEUED
    assert bulk_app.backend.ready_ids("default", 10).count(job.id) == 1


def test_a_resent_chunk_checks_ids_so_nothing_runs_twice(bulk_app):
    backend = bulk_app.backend
    builder = bulk_app._builder("echo")
    jobs = [builder.build((i,), {}) for i in range(5)]
    first = backend.enqueue(jobs, fresh=True)
    assert [created for _, created, _ in first] == [True] * 5
    again = backend.enqueue(jobs)  # what a resend after a lost reply sends
    assert again == [(j[0], False, "queued") for j in jobs]
    assert backend.ready_ids("default", 100) == [j[0] for j in jobs]  # each once


def test_mixed_tasks_queues_and_options_in_one_chunk_keep_their_own_fields(bulk_app):
    @bulk_app.task(name="other", queue="q2", priority=5)
    def other(x):
        return x

    jobs = bulk_app.enqueue_many([("echo", (1,), {}), ("other", (2,), {}), ("echo", (), {"x": 3}),
                                  ("other", (4,), {})], unique=True)
    assert all(j.created for j in jobs)
    got = [bulk_app.backend.job_hash(j.id) for j in jobs]
    assert [(h["t"], h["q"], h["p"]) for h in got] == [
        (b"echo", b"default", b"0"), (b"other", b"q2", b"5"), (b"echo", b"default", b"0"), (b"other", b"q2", b"5")]
    assert len({h["u"] for h in got}) == 4  # per-job unique keys
    assert bulk_app.backend.ready_ids("default", 10) == [jobs[0].id, jobs[2].id]
    assert bulk_app.backend.ready_ids("q2", 10) == [jobs[1].id, jobs[3].id]
    # the same unique keys again: every job stands in, nothing new is queued
    again = bulk_app.enqueue_many([("echo", (1,), {}), ("other", (2,), {})], unique=True)
    assert [(j.id, j.created) for j in again] == [(jobs[0].id, False), (jobs[1].id, False)]


def test_one_push_per_list_keeps_the_order_of_front_and_back_jobs(bulk_app):
    backend = bulk_app.backend
    builder = bulk_app._builder("echo")
    jobs = []
    for i, front in enumerate([False, True, False, True, False]):
        job = builder.build((i,), {}, front=front)
        jobs.append(job)
    backend.enqueue(jobs, fresh=True)
    # as five single pushes would leave it: front jobs next (the last first), then the rest in order
    ids = [j[0] for j in jobs]
    assert backend.ready_ids("default", 10) == [ids[3], ids[1], ids[0], ids[2], ids[4]]
    assert backend.client.zrange(backend.keys.priorities("default"), 0, -1) == [b"0"]
    assert backend.client.llen(backend.keys.notify("default")) == 1  # one wake-up for a sleeper


def test_a_fresh_job_created_by_a_send_whose_reply_was_lost_reports_created(bulk_app, monkeypatch):
    backend = bulk_app.backend
    real = backend.enqueue_plain

    def ran_then_lost(job):
        real(job)
        raise BrokerUnavailable("connection lost before the reply")

    monkeypatch.setattr(backend, "enqueue_plain", ran_then_lost)
    job = bulk_app.tasks["echo"].delay(1)
    assert job.created and job.state == JobState.QUEUED  # this call created it, on its first send
    assert backend.ready_ids("default", 10) == [job.id]

    builder = bulk_app._builder("echo")
    jobs = [builder.build((i,), {}) for i in range(3)]
    real_run = backend.run

    def script_ran_then_lost(name, *args, resend=True):
        reply = real_run(name, *args, resend=resend)
        if name == "enqueue" and not resend:
            raise BrokerUnavailable("connection lost before the reply")
        return reply

    monkeypatch.setattr(backend, "run", script_ran_then_lost)
    assert [created for _, created, _ in backend.enqueue(jobs, fresh=True)] == [True] * 3


@pytest.mark.parametrize("path", ["plain", "script", "delayed script"])
def test_a_first_send_run_late_leaves_the_job_its_resend_created_and_a_worker_leased(bulk_app, path):
    """A fresh job's first send is never resent as it is; its lost reply
    sends it again through the script, which checks the id. But the first
    send itself may still run later (a paused server working through its
    backlog, a retransmitted packet): the very same bytes, run after the
    resend created the job and a worker leased it, must change nothing a
    claim or a settle relies on."""
    backend = bulk_app.backend
    s = bulk_app.settings
    caps = (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))
    # due soon, but not before the resend below (however slow the machine): it is scheduled
    eta = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=2) if path == "delayed script" else None
    job = bulk_app._builder("echo").build((1,), {}, eta=eta)
    jid = str(job[0])
    if path == "plain":
        assert backend.plain(job)
        first = lambda: backend.enqueue_plain(job)  # noqa: E731
    else:
        from taskq.storage.backend import enqueue_args

        flat = ["", *enqueue_args([job], check=False)]
        first = lambda: backend.run("enqueue", *flat, resend=False)  # noqa: E731
    # the resend (checked) creates the job; a worker leases it
    assert backend.enqueue([job])[0] == (jid, True, "scheduled" if path == "delayed script" else "queued")
    if path == "delayed script":
        wait_for(lambda: backend.promote(100)[0] or backend.job_hash(jid)["s"] == b"queued", what="due")
    _, rows = backend.settle_claim("w1", 10, [], ["default"], [], caps)
    assert [r[0].decode() for r in rows] == [jid]
    token = int(rows[0][1])
    before = backend.job_hash(jid)

    first()  # the first send, run late

    after = backend.job_hash(jid)
    assert after["s"] == b"active" and after["k"] == before["k"] and after["w"] == b"w1"
    assert backend.client.zscore(backend.keys.schedule, jid) is None
    _, rows = backend.settle_claim("w2", 10, [], ["default"], [], caps)
    assert rows == []  # nobody else leases it
    flags, _ = backend.settle_claim("w1", 0, [Outcome(jid, token, "ok", ttl_ms=60_000).fields()], [], [], caps)
    assert flags == [1]  # its worker's outcome still counts
    assert bulk_app.job(jid).state == JobState.SUCCEEDED
    _, rows = backend.settle_claim("w2", 10, [], ["default"], [], caps)
    assert rows == []  # and it does not run again
    assert backend.job_hash(jid)["s"] == b"succeeded"


def test_a_chunk_first_sent_late_leaves_the_jobs_its_resend_created_and_workers_leased(bulk_app):
    """As above for a chunk of map(): its first send asks for all its ids at
    once and, finding them, leaves every job as it is."""
    from taskq.storage.backend import enqueue_args

    backend = bulk_app.backend
    s = bulk_app.settings
    caps = (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))
    builder = bulk_app._builder("echo")
    jobs = [builder.build((i,), {}) for i in range(5)]
    flat = ["", *enqueue_args(jobs, check=False)]
    assert all(created for _, created, _ in backend.enqueue(jobs))  # the resend
    _, rows = backend.settle_claim("w1", 3, [], ["default"], [], caps)  # three leased, two queued
    before = {str(j[0]): backend.job_hash(str(j[0])) for j in jobs}

    reply = backend.run("enqueue", *flat, resend=False)  # the first send, run late

    assert [r[0].decode() for r in reply] == [str(j[0]) for j in jobs]  # every one stood in, none created
    assert {jid: backend.job_hash(jid) for jid in before} == before
    assert sorted(backend.ready_ids("default", 10)) == sorted(str(j[0]) for j in jobs[3:])  # no second entry
    _, rows = backend.settle_claim("w2", 10, [], ["default"], [], caps)
    assert sorted(r[0].decode() for r in rows) == sorted(str(j[0]) for j in jobs[3:])


def test_map_retries_a_server_that_is_down_when_it_starts(own_server):
    """As .delay(): a server that is down is retried for enqueue_retry_timeout,
    also before the stream has its first connection (or the code is loaded)."""
    app = TaskQ("test", own_server.url, namespace="bulkdown", enqueue_retry_timeout=30)
    echo = app.task(name="echo")(lambda x: x)
    own_server.kill()
    back = threading.Timer(0.3, own_server.start)
    back.start()
    try:
        jobs = echo.map(range(ENQUEUE_CHUNK + 10))
        assert all(j.created for j in jobs)
        assert app.backend.ready_ids("default", 2 * ENQUEUE_CHUNK) == [j.id for j in jobs]  # each once, in order
    finally:
        back.join()
        app.close()


@pytest.mark.parametrize("flag", ["on_success", "on_failure"])
def test_hooks_given_per_call_are_refused_not_dropped(bulk_app, flag):
    """A function cannot be stored with the job, so the worker would never call it."""
    echo = bulk_app.tasks["echo"]
    for enqueue in (lambda: echo.apply_async((1,), **{flag: print}), lambda: echo.map([1], **{flag: print}),
                    lambda: bulk_app.enqueue_many([("echo", (1,), {})], **{flag: print})):
        with pytest.raises(ConfigurationError, match=flag):
            enqueue()
    assert queued_ids(bulk_app) == set()
