"""The hot path's own connections (``storage/wire.py``): replies, errors,
stale connections after a server restart, threads and forks."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
import redis
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from taskq import BrokerUnavailable, TaskQ
from taskq.ephemeral import EphemeralServer
from taskq.storage.backend import REPLY_MARGIN
from taskq.storage.wire import Wire
from tests.conftest import wait_for


@pytest.fixture
def client(redis_url: str) -> Iterator[redis.Redis]:
    c = redis.Redis.from_url(redis_url, socket_timeout=5.0)
    yield c
    c.close()


def test_replies_and_error_replies_in_place(client: redis.Redis, namespace: str) -> None:
    wire = Wire(client)
    key = f"wire:{namespace}"
    replies = wire.pipeline([("SET", key, "x"), ("LPUSH", key, "y"), ("GET", key)])
    assert replies[0] == b"OK"
    assert isinstance(replies[1], ResponseError) and "WRONGTYPE" in str(replies[1])
    assert replies[2] == b"x"
    with pytest.raises(ResponseError, match="WRONGTYPE"):
        wire.call("LPUSH", key, "y")
    assert wire.call("GET", key) == b"x"  # the connection stays usable after an error reply
    assert len(wire._idle) == 1
    client.delete(key)
    wire.close()


def test_a_connection_closed_by_a_restart_is_replaced_transparently(own_server: EphemeralServer) -> None:
    c = redis.Redis.from_url(own_server.url)
    wire = Wire(c)
    assert wire.call("PING") == b"PONG"
    old = wire._idle[-1]
    own_server.restart(graceful=True)
    assert wire.call("PING") == b"PONG"  # the stale idle connection failed; a new one answered
    assert wire._idle[-1] is not old
    wire.close()
    c.close()


def test_an_unreachable_server_raises_instead_of_looping(own_server: EphemeralServer) -> None:
    c = redis.Redis.from_url(own_server.url, socket_connect_timeout=1.0)
    wire = Wire(c)
    assert wire.call("PING") == b"PONG"
    own_server.kill()
    with pytest.raises(redis.ConnectionError):
        wire.call("PING")
    with pytest.raises(redis.ConnectionError):
        wire.call("PING")
    c.close()


def test_a_read_timeout_is_not_resent(client: redis.Redis, namespace: str) -> None:
    wire = Wire(client)
    key = f"wire:{namespace}:counter"
    wire.call("PING")  # an idle connection exists: a resend would be possible
    script = "redis.call('INCR', KEYS[1]); local t = redis.call('TIME'); local e = t[1] * 1e6 + t[2] + 300000; " \
             "while true do t = redis.call('TIME'); if t[1] * 1e6 + t[2] > e then break end end; return 1"
    with pytest.raises(RedisTimeoutError):
        wire.call("EVAL", script, 1, key, timeout=0.05)

    def counter_once_idle() -> int | None:
        # TIME may stand still inside a script, which then runs until the server's
        # busy-reply-threshold and answers BUSY meanwhile: read once it ended
        try:
            return int(client.get(key))
        except ResponseError as exc:
            if str(exc).startswith("BUSY"):
                return None
            raise

    assert wait_for(counter_once_idle, 30, what="the slow script to end") == 1  # ran once: not sent again
    assert wire.call("PING") == b"PONG"  # the timed-out connection was dropped, not reused
    client.delete(key)
    wire.close()


def test_threads_never_share_a_connection(client: redis.Redis, namespace: str) -> None:
    wire = Wire(client)
    key = f"wire:{namespace}:list"
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(200):
                value = f"{n}:{i}"
                assert wire.pipeline([("RPUSH", key, value), ("ECHO", value)])[1] == value.encode()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert client.llen(key) == 1600
    assert 1 <= len(wire._idle) <= 8
    client.delete(key)
    wire.close()


def test_a_forked_child_opens_its_own_connections(client: redis.Redis) -> None:
    wire = Wire(client)
    wire.call("PING")
    parent_conn = wire._idle[-1]
    pid = os.fork()
    if pid == 0:  # child: must not use (or shut down) the parent's socket
        code = 0
        try:
            if wire.call("ECHO", "child") != b"child" or parent_conn in wire._idle:
                code = 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert wire._idle == [parent_conn]
    assert wire.call("ECHO", "parent") == b"parent"  # the parent's connection still works
    wire.close()


def test_enqueue_survives_a_server_restart_between_calls(own_server: EphemeralServer) -> None:
    app = TaskQ("wire", own_server.url, namespace="wire")
    task = app.task(name="t")(lambda: None)
    assert task.delay().created
    own_server.restart(graceful=True)
    job = task.delay()  # the idle connection is stale; the job still goes in, once
    assert job.created
    assert app.backend.ready_ids("default", 10).count(job.id) == 1
    app.close()


def test_resend_false_raises_instead_of_sending_again(own_server: EphemeralServer) -> None:
    c = redis.Redis.from_url(own_server.url)
    wire = Wire(c)
    assert wire.call("PING") == b"PONG"
    own_server.restart(graceful=True)
    with pytest.raises((redis.ConnectionError, OSError)):
        wire.call("INCR", "n", resend=False)  # the caller decides how to send it again
    assert wire.call("INCR", "n", resend=False) == 1  # a new connection; sent once
    wire.close()
    c.close()


def test_a_claim_whose_reply_is_lost_is_not_left_leased_to_a_live_worker(make_app) -> None:
    """The claim ran on the server, then its connection dropped before the
    reply arrived: the worker must learn of it (and hand back the jobs it
    never heard of), not claim again as if nothing happened."""
    from tests.apps.control import consumer
    from tests.conftest import wait_for

    app = make_app()
    app.task(name="add", tombstone=True)(lambda a, b: a + b)
    c = consumer(app)  # its heartbeat leaves an idle connection: the claim reuses it
    wire, claim_fn = app.backend.wire, app.backend.scripts["settle_claim"]
    lost: list[str] = []
    take = wire._take

    def take_losing_a_claim_reply() -> tuple:
        conn, reused = take()
        send, read = conn.send_packed_command, conn.read_response

        def send_packed_command(data, *args, **kwargs):
            armed = not lost and reused and any(
                claim_fn.function.encode() in d or claim_fn.sha.encode() in d for d in data)
            send(data, *args, **kwargs)
            if armed:
                lost.append("armed")
                conn.read_response = lose_reply

        def lose_reply(*args, **kwargs):  # the server ran the claim; its reply never arrives
            wait_for(lambda: app.backend.job_hash(job.id).get("s") == b"active", what="the claim ran")
            conn.read_response = read
            conn.disconnect()
            raise redis.ConnectionError("Connection closed by server.")

        conn.send_packed_command = send_packed_command
        return conn, reused

    wire._take = take_losing_a_claim_reply
    job = app.enqueue("add", 1, 2)
    t = threading.Thread(target=c.run, daemon=True)
    t.start()
    try:
        wait_for(lambda: job.state.finished, timeout=15, what="the job to run")
        assert lost and job.result(timeout=5) == 3
    finally:
        c.stopping.set()
        t.join(15)


@pytest.mark.parametrize("when", ["before the wait", "during the wait"])
def test_result_from_a_server_that_stops_answering_raises_soon_after_its_timeout(own_server: EphemeralServer,
                                                                                 when: str) -> None:
    """A paused server (SIGSTOP: connections stay open, nothing answers) makes
    result() raise BrokerUnavailable a short margin after its own timeout,
    not after the connection's 30 s read timeout."""
    app = TaskQ("slow", own_server.url, namespace="slow")
    job = app.task(name="t", tombstone=True)(lambda: 1).delay()  # leaves an idle connection
    admin = redis.Redis.from_url(own_server.url)
    admin.ping()
    pid = own_server.pid
    assert pid is not None
    outcome: list[BaseException] = []

    def wait() -> None:
        try:
            job.result(timeout=2)
        except BaseException as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait, daemon=True)
    try:
        if when == "during the wait":
            waiter.start()
            wait_for(lambda: any(c.get("cmd") == "blmove" for c in admin.client_list()), 30, what="the wait")
        os.kill(pid, signal.SIGSTOP)
        started = time.monotonic()
        if when == "before the wait":
            waiter.start()
        # a bound well below the 30 s read timeout, with room for a slow machine
        waiter.join(2 + 2 * REPLY_MARGIN + 12)
        took = time.monotonic() - started
        assert not waiter.is_alive(), "result() still waiting on a server that does not answer"
        assert took < 2 + 2 * REPLY_MARGIN + 12, took
        assert len(outcome) == 1 and isinstance(outcome[0], BrokerUnavailable), outcome
    finally:
        os.kill(pid, signal.SIGCONT)
        waiter.join(40)
        admin.close()
        app.close()
