"""Bad input against a real server: calls refused before anything is
written, jobs written into Redis by hand that no worker can run, and a
server that is down or refuses writes. Every bad job ends ``failed`` with a
clear error; the worker keeps serving; nothing is left half-written."""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskq import BrokerRefused, BrokerUnavailable, JobState, PayloadTooLarge, TaskFailed, TaskQ, codec
from taskq.embedded import EphemeralServer
from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig
from tests.conftest import wait_for

PICKLE_EXPLOIT = b"cos\nsystem\n(S'touch /tmp/taskq-pwned'\ntR."


@pytest.fixture
def app(make_app: Callable[..., TaskQ]) -> TaskQ:
    app = make_app()

    @app.task(name="echo", tombstone=True)
    def echo(*args: Any, **kwargs: Any) -> list[Any]:
        return [list(args), kwargs]

    @app.task(name="nothing")
    def nothing() -> str:
        return "ran"

    return app


@pytest.fixture
def consumer(app: TaskQ) -> Iterator[Consumer]:
    c = Consumer(app, WorkerConfig(concurrency=1, block_timeout=0.05), "w1")
    app.backend.register_tasks({n: app.options_for(n).max_attempts for n in app.tasks})
    c.heartbeat.beat()
    yield c
    c.stopping.set()
    c.shutdown()


def put_job(app: TaskQ, job_id: str, fields: dict[str, Any], queue: str = "default", prio: int = 0) -> None:
    """Write a job the way enqueue.lua lays it out: hash, ready list, level, wake-up."""
    k, r = app.backend.keys, app.backend.client
    r.hset(k.job(job_id), mapping=fields)
    r.lpush(k.ready(queue, prio), job_id)
    r.zadd(k.priorities(queue), {str(prio): -prio})
    r.sadd(k.queues, queue)
    r.lpush(k.notify(queue), "1")


def fields(task: str, payload: bytes, **extra: Any) -> dict[str, Any]:
    return {"t": task, "q": "default", "p": 0, "d": payload, "c": int(time.time() * 1000), "s": "queued", **extra}


def drain(c: Consumer, timeout: float = 20.0) -> None:
    """Step the consumer until its queue is empty and it holds nothing."""
    deadline = time.monotonic() + timeout
    while True:
        c.step()
        if not c.held and not c.pending and not c.app.backend.queue_levels("default"):
            return
        assert time.monotonic() < deadline, "queue did not drain"


def assert_failed_cleanly(app: TaskQ, job_id: str, message: str) -> dict[str, Any]:
    """Failed, indexed as failed, held by no worker, with this error message."""
    info = app.job(job_id).info()
    assert info.state == JobState.FAILED
    assert info.errors[-1]["message"].startswith(message), info.errors
    b = app.backend
    assert job_id in b.zset_ids(b.keys.failed, 1000)
    assert not b.client.smembers(b.keys.worker_jobs("w1"))
    return info.errors[-1]


def assert_worker_still_serves(app: TaskQ, c: Consumer) -> None:
    job = app.tasks["echo"].delay(1, k="v")
    drain(c)
    assert job.result(timeout=5) == [[1], {"k": "v"}]


# ---------------------------------------------------------------- refused at the call


def test_unserialisable_argument_raises_type_error_and_enqueues_nothing(app):
    with pytest.raises(TypeError, match="positional argument 1 cannot be serialized with msgpack"):
        app.tasks["echo"].delay(1, object())
    with pytest.raises(TypeError, match="argument 'when' cannot be serialized with msgpack"):
        app.tasks["echo"].delay(when=time)
    assert app.backend.count_keys() == 0


def test_payload_over_the_limit_raises_payload_too_large_and_enqueues_nothing(make_app):
    app = make_app(max_payload_bytes=10_000)
    task = app.task(name="big")(lambda data: None)
    with pytest.raises(PayloadTooLarge, match="over max_payload_bytes=10000"):
        task.delay("x" * 20_000)
    with pytest.raises(PayloadTooLarge):  # one bad item in a batch: none of the batch is written
        task.map(["small", "x" * 20_000, "small"])
    assert app.backend.count_keys() == 0
    assert task.delay("x" * 9_000).state == JobState.QUEUED  # just under the limit is fine


# ---------------------------------------------------------------- written by hand


POISON = {
    "not msgpack": b"\xc1",
    "empty": b"",
    "truncated": codec.dumps([[1, 2, 3], {}])[:-2],
    "trailing bytes": codec.dumps([[], {}]) + b"\x00",
    "a pickle": PICKLE_EXPLOIT,
    "an int": codec.dumps(5),
    "a map": codec.dumps({"args": [], "kwargs": {}}),
    "one element": codec.dumps([[1]]),
    "three elements": codec.dumps([[1], {}, 3]),
    "swapped": codec.dumps([{}, []]),
    "non-string kwarg names": codec.dumps([[], {1: 2}]),
    "unknown extension type": msgpack.packb([[msgpack.ExtType(99, b"\x00")], {}]),
    "garbled datetime": msgpack.packb([[msgpack.ExtType(1, b"yesterday")], {}]),
    "invalid utf-8 string": b"\x92\x91\xa2\xff\xfe\x80",
}


@pytest.mark.parametrize("payload", POISON.values(), ids=POISON.keys())
def test_undecodable_payload_fails_the_job_and_the_worker_keeps_serving(app, consumer, payload):
    put_job(app, "poison", fields("echo", payload))
    drain(consumer)
    err = assert_failed_cleanly(app, "poison", "undecodable payload: ")
    assert err["type"] == "ValueError"
    assert_worker_still_serves(app, consumer)


@pytest.mark.parametrize("missing", [("t",), ("d",), ("q",), ("p",), ("c",), ("t", "q", "p", "d", "c")])
def test_job_hash_missing_fields_is_failed_not_crashing_the_claim(app, consumer, missing):
    job = {k: v for k, v in fields("echo", codec.encode_args((1,), {})).items() if k not in missing}
    put_job(app, "holey", job)
    drain(consumer)
    required = [f for f in ("t", "q", "p", "d") if f in missing]
    if required:
        err = assert_failed_cleanly(app, "holey", "undecodable payload: the job hash lacks field(s) " + ", ".join(required))
        assert err["type"] == "ValueError"
        assert "not written by taskq" in err["message"]
    else:  # only the creation time is missing: nothing needs it to run
        assert app.job("holey").state == JobState.SUCCEEDED
    assert_worker_still_serves(app, consumer)


def test_many_malformed_jobs_in_one_claimed_batch_all_fail(app, consumer):
    consumer.avg_run = 0.0001  # claim big batches
    for i, payload in enumerate(POISON.values()):
        put_job(app, f"p{i}", fields("echo", payload))
    put_job(app, "no-task", {k: v for k, v in fields("echo", b"").items() if k != "t"})
    put_job(app, "good", fields("echo", codec.encode_args((7,), {})))
    drain(consumer)
    for i in range(len(POISON)):
        assert_failed_cleanly(app, f"p{i}", "undecodable payload: ")
    assert_failed_cleanly(app, "no-task", "undecodable payload: the job hash lacks field(s) t")
    assert app.job("good").state == JobState.SUCCEEDED
    failed = app.backend.task_counters()
    assert int(failed["echo|failed"]) == len(POISON)


def test_undecodable_per_call_options_fail_the_job(app, consumer):
    put_job(app, "bad-opts", fields("echo", codec.encode_args((), {}), o=b"\xc1"))
    put_job(app, "bad-flag", fields("echo", codec.encode_args((), {}), o=codec.dumps({"retry": "many"})))
    drain(consumer)
    assert_failed_cleanly(app, "bad-opts", "undecodable payload: ")
    assert_failed_cleanly(app, "bad-flag", "undecodable payload: retry must be an int >= 0")


def test_garbled_error_history_does_not_break_failing_the_job(app, consumer):
    put_job(app, "garbled", fields("echo", b"\xc1", err=b"\xc1\xc1"))
    drain(consumer)
    err = assert_failed_cleanly(app, "garbled", "undecodable payload: ")
    assert len(app.job("garbled").info().errors) == 1
    assert err["type"] == "ValueError"


def test_garbled_numbers_in_a_job_hash_do_not_break_listings(app):
    """A count, priority or time that is not a number (not written by taskq)
    reads as 0 or no time: ``taskq jobs`` and ``taskq job show`` still answer."""
    put_job(app, "garbled-numbers", fields("echo", codec.encode_args((), {}), p=b"high", a=b"x", c=b"yesterday",
                                           sa=b"\xff", rq=b"1.5", cc=b"-"))
    put_job(app, "fine", fields("echo", codec.encode_args((1,), {})))
    listed = {i.id: i for i in app.control.list_jobs("queued")}
    assert set(listed) == {"garbled-numbers", "fine"}
    info = listed["garbled-numbers"]
    assert (info.priority, info.attempts, info.requeue_count, info.cancel_count) == (0, 0, 0, 0)
    assert info.created_at is None and info.started_at is None
    assert app.job("garbled-numbers").info() == info
    assert listed["fine"].args == [1]


def test_unknown_task_in_a_hand_written_job_fails_by_name(app, consumer):
    put_job(app, "who", fields("no.such.task", codec.encode_args((), {})))
    drain(consumer)
    err = assert_failed_cleanly(app, "who", f"unknown task 'no.such.task' in namespace {app.settings.namespace!r}; "
                                            f"this worker (app {app.name!r}) knows: echo, nothing. ")
    assert err["type"] == "UnknownTask"


_ints = st.integers(-(2**63), 2**64 - 1)
_values = st.recursive(
    st.none() | st.booleans() | _ints | st.floats() | st.text(max_size=6) | st.binary(max_size=6)
    | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=6)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3) | _ints, inner, max_size=3),
    max_leaves=6,
)
_shaped = st.tuples(st.lists(_values, max_size=2), st.dictionaries(st.text(max_size=3), _values, max_size=2)).map(list)
_payloads = st.one_of(
    st.binary(max_size=48),
    _values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
    _shaped.map(lambda v: msgpack.packb(v, use_bin_type=True)),
)


def test_fuzzed_payloads_never_crash_the_worker_and_every_job_finishes(app, consumer):
    """Random bytes and random msgpack values as payloads of a task that takes
    no arguments: undecodable ones fail as such, decodable ones with arguments
    fail on the call, and only ``[[], {}]`` runs."""
    seen: dict[str, int] = {}

    @settings(max_examples=100, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @given(_payloads)
    def check(payload: bytes) -> None:
        jid = secrets.token_hex(6)
        put_job(app, jid, fields("nothing", payload))
        drain(consumer)
        info = app.job(jid).info()
        try:
            args, kwargs = codec.decode_args(payload)
        except ValueError:
            expected, message = JobState.FAILED, "undecodable payload: "
        else:
            if (args, kwargs) == ([], {}):
                expected, message = JobState.SUCCEEDED, ""
            else:
                expected, message = JobState.FAILED, ""
        assert info.state == expected, (payload, info.errors)
        if message:
            assert info.errors[-1]["message"].startswith(message)
        if expected == JobState.FAILED and not message:
            assert info.errors[-1]["type"] == "TypeError"  # the call did not fit the signature
        seen[expected.value] = seen.get(expected.value, 0) + 1

    check()
    assert seen.get("failed", 0) > 0
    assert not app.backend.client.smembers(app.backend.keys.worker_jobs("w1"))
    assert_worker_still_serves(app, consumer)


# ---------------------------------------------------------------- a server that is down or refuses


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize("durable", [False, True])
def test_server_down_at_delay_raises_broker_unavailable(durable):
    app = TaskQ("down", f"redis://127.0.0.1:{_closed_port()}/0", namespace="down", enqueue_retry_timeout=1)
    task = app.task(name="t", durable=durable)(lambda: None)
    started = time.monotonic()
    with pytest.raises(BrokerUnavailable, match=r"cannot reach the server at redis://127\.0\.0\.1:\d+/0"):
        task.delay()
    assert 1 <= time.monotonic() - started < 15  # tried for its whole retry window, not hanging
    app.close()


def _namespace_keys(server: EphemeralServer, namespace: str) -> list[bytes]:
    with redis.Redis.from_url(server.url) as r:
        return list(r.scan_iter(match="\\{" + namespace + "\\}:*"))


def test_server_out_of_memory_refuses_enqueue_and_leaves_no_partial_job(own_server):
    app = TaskQ("oom", own_server.url, namespace="oom", enqueue_retry_timeout=0.5)
    task = app.task(name="t")(lambda x: None)
    app.backend.ping()
    with redis.Redis.from_url(own_server.url) as admin:
        assert admin.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        admin.config_set("maxmemory", 1)
        try:
            for call in (lambda: task.delay(1), lambda: task.apply_async((1,), unique_key="once"),
                         lambda: task.apply_async((1,), delay=30), lambda: task.map([1, 2, 3])):
                with pytest.raises(BrokerRefused, match="out of memory"):
                    call()
            assert _namespace_keys(own_server, "oom") == []
        finally:
            admin.config_set("maxmemory", 0)
    assert task.apply_async((1,), unique_key="once").created  # the refused call held no unique key
    app.close()


def _refusing_server(refusal: str, tmp_path: Path) -> EphemeralServer:
    """A server that refuses writes: its snapshots fail (MISCONF), or it has
    fewer replicas than min-replicas-to-write (NOREPLICAS)."""
    if refusal == "NOREPLICAS":
        return EphemeralServer(extra_args=["--min-replicas-to-write", "1"]).start()
    server = EphemeralServer(extra_args=["--dir", str(tmp_path), "--dbfilename", "blocked.rdb",
                                         "--save", "3600 1"]).start()
    (tmp_path / "blocked.rdb").mkdir()  # the snapshot cannot be renamed onto a directory
    with redis.Redis.from_url(server.url) as r:
        r.bgsave()
        wait_for(lambda: r.info("persistence")["rdb_last_bgsave_status"] == "err", 10, what="the snapshot to fail")
    return server


@pytest.mark.parametrize(("refusal", "message"), [("MISCONF", "it cannot persist to disk"),
                                                  ("NOREPLICAS", "too few replicas in sync")])
def test_a_server_refusing_writes_is_broker_refused_and_nothing_is_written(tmp_path, refusal, message):
    server = _refusing_server(refusal, tmp_path)
    try:
        app = TaskQ("refuse", server.url, namespace="refuse", enqueue_retry_timeout=0.5)
        task = app.task(name="t")(lambda *a: None)
        for call in (task.delay, lambda: task.apply_async(unique_key="once"), lambda: task.map([(1,), (2,)]),
                     lambda: task.apply_async(delay=30)):
            with pytest.raises(BrokerRefused, match=f"server refused the write: {message}"):
                call()
        assert _namespace_keys(server, "refuse") == []
        app.close()
    finally:
        server.stop()


def test_a_database_the_server_does_not_have_is_refused_with_a_clear_message(own_server):
    app = TaskQ("db", own_server.url.rsplit("/", 1)[0] + "/99", namespace="db", enqueue_retry_timeout=0.5)
    task = app.task(name="t")(lambda: None)
    for call in (task.delay, lambda: task.map([(), ()]), lambda: app.job("j1").state, app.stats):
        with pytest.raises(BrokerRefused, match=r"server at redis://127\.0\.0\.1:\d+/99 has no such database"):
            call()
    app.close()


def test_read_only_replica_refuses_enqueue_with_a_clear_message(own_server):
    with EphemeralServer(extra_args=["--replicaof", "127.0.0.1", str(own_server.port)]) as replica:
        with redis.Redis.from_url(replica.url) as r:
            assert r.info("replication")["role"] == "slave"
        app = TaskQ("ro", replica.url, namespace="ro", enqueue_retry_timeout=0.5)
        task = app.task(name="t")(lambda: None)
        with pytest.raises(BrokerRefused, match="read-only replica; point redis_url at the primary"):
            task.delay()
        assert _namespace_keys(replica, "ro") == []
        assert _namespace_keys(own_server, "ro") == []
        app.close()


# Runs for ARGV[1] ms on the server's clock: past busy-reply-threshold every
# other client is answered "BUSY ... busy running a script".
BUSY_SCRIPT = """
local t0 = redis.call('TIME')
while true do
  local t = redis.call('TIME')
  if (t[1] - t0[1]) * 1000 + (t[2] - t0[2]) / 1000 > tonumber(ARGV[1]) then return 1 end
end
"""


@contextlib.contextmanager
def busy_server(server: EphemeralServer, end_after: float | None = None) -> Iterator[None]:
    """The server busy running a script (answering BUSY from 100 ms on) until
    the block ends, or ``end_after`` s after BUSY was first seen (the script is
    ended by ``SCRIPT KILL``); yields once BUSY is seen, returns once the
    script ended."""
    admin = redis.Redis.from_url(server.url)
    admin.config_set("busy-reply-threshold", 100)
    ended: list[str] = []

    def run() -> None:
        with redis.Redis.from_url(server.url) as client:
            try:
                client.eval(BUSY_SCRIPT, 0, 120_000)
                ended.append("ran its course")
            except redis.ResponseError as exc:
                ended.append(str(exc))

    def kill() -> None:
        with redis.Redis.from_url(server.url) as client, contextlib.suppress(redis.ResponseError):
            client.script_kill()  # NOTBUSY once it ended

    runner = threading.Thread(target=run, daemon=True)
    runner.start()

    def busy() -> bool:
        try:
            admin.ping()
        except redis.ResponseError as exc:
            return str(exc).startswith("BUSY")
        return False

    timer = threading.Timer(end_after or 0, kill)
    try:
        wait_for(busy, 30, interval=0.01, what="the server to answer BUSY")
        if end_after is not None:
            timer.start()
        yield
    finally:
        timer.cancel()
        if timer.ident is not None:
            timer.join()
        kill()
        runner.join(30)
        admin.close()
    assert ended, "the busy script did not end"


def test_a_server_busy_running_a_script_is_retried_by_enqueue_and_reported_by_the_rest(own_server):
    app = TaskQ("busy", own_server.url, namespace="busy", enqueue_retry_timeout=30)
    task = app.task(name="t")(lambda: None)
    app.backend.ping()
    with busy_server(own_server, end_after=1.5):  # the app's first enqueue, too, meets the busy server
        jobs = [task.delay(), task.apply_async(unique_key="once"), task.apply_async(job_id="custom"),
                *task.map([(1,), (2,)]), task.apply_async(delay=60)]
    assert all(j.created for j in jobs)
    assert sorted(app.backend.ready_ids("default", 100)) == sorted(j.id for j in jobs[:-1])  # each once
    assert jobs[-1].state == JobState.SCHEDULED
    first = jobs[0]
    with busy_server(own_server):  # busy until every call below met it
        for call in (lambda: first.result(timeout=1), lambda: first.state, lambda: first.cancel(), app.stats,
                     lambda: app.control.list_jobs("queued")):
            with pytest.raises(BrokerUnavailable, match="busy running a script"):
                call()
    assert first.cancel() == "cancelled"
    assert task.delay().created and app.backend.multi  # the busy spell did not turn off MULTI/EXEC enqueues
    app.close()


def test_a_garbled_error_history_does_not_break_result_or_info(app) -> None:
    app.task(name="t", tombstone=False)(lambda: None)
    job = app.tasks["t"].delay()
    job.cancel()
    app.backend.client.hset(app.backend.keys.job(job.id), "err", b"\xc1garbage")
    assert job.info().errors == []
    with pytest.raises(TaskFailed) as err:
        job.result(timeout=1)
    assert err.value.state == "cancelled"
