"""The ``on_finish`` listener on a connection that dies without a word: a
server gone without closing it, or a network partition, leaves the socket
open with nothing coming; the listener's PING finds it out and it
subscribes again. A connection the server closes (``CLIENT KILL``) is an
error on the next read: resubscribed at once."""

from __future__ import annotations

import socket
import threading
import urllib.parse
from collections.abc import Iterator

import pytest
import redis

from taskq import JobState, events
from tests.apps.control import build as build_control_app
from tests.conftest import wait_for


class SilencingProxy:
    """A TCP relay to a server whose connections can be silenced one by
    one: still open both ways, but nothing passes, as in a partition."""

    def __init__(self, url: str) -> None:
        parts = urllib.parse.urlsplit(url)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 6379)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = parts._replace(netloc=f"127.0.0.1:{self.listener.getsockname()[1]}").geturl()
        self.silenced: set[int] = set()  # client ports whose bytes are dropped
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def silence(self, client_port: int) -> None:
        self.silenced.add(client_port)

    def _accept(self) -> None:
        while True:
            try:
                client, (_, port) = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst, port), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, port: int) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                break
            if not data:
                break
            if port in self.silenced:
                continue
            try:
                dst.sendall(data)
            except OSError:
                break
        for s in (src, dst):
            s.close()

    def close(self) -> None:
        self.listener.close()
        for s in self.sockets:
            s.close()


@pytest.fixture
def proxy(redis_url: str) -> Iterator[SilencingProxy]:
    p = SilencingProxy(redis_url)
    yield p
    p.close()


def pubsub_port(app) -> int | None:
    """The client port of the listener's subscription (None between two)."""
    try:
        return app.events._pubsub.connection._sock.getsockname()[1]
    except (AttributeError, OSError):
        return None


def test_a_silently_dead_subscription_is_found_and_replaced(proxy, redis_url, namespace, monkeypatch, caplog):
    """The job is cancelled while the subscription hears nothing: its event
    is lost; the unanswered PING makes the listener subscribe again and read
    the watched job, which fires the callback."""
    monkeypatch.setattr(events, "PING_AFTER", 0.2)
    monkeypatch.setattr(events, "PONG_WITHIN", 0.5)
    app = build_control_app(proxy.url, namespace)
    direct = build_control_app(redis_url, namespace)
    states: list[JobState] = []
    try:
        job = app.tasks["noop"].apply_async(delay=60)
        job.on_finish(lambda j, s: states.append(s))
        proxy.silence(pubsub_port(app))
        direct.control.cancel(job.id)
        wait_for(lambda: states, timeout=15, what="the callback, through a new subscription")
        assert states == [JobState.CANCELLED]
        assert "no answer to a PING" in caplog.text
    finally:
        app.close()
        direct.backend.delete_namespace()
        direct.close()


def test_a_subscription_the_server_closed_is_replaced(redis_url, namespace):
    app = build_control_app(redis_url, namespace)
    admin = redis.Redis.from_url(redis_url)
    states: list[JobState] = []
    try:
        job = app.tasks["noop"].apply_async(delay=60)
        job.on_finish(lambda j, s: states.append(s))
        port = pubsub_port(app)
        ids = [c["id"] for c in admin.client_list() if c["addr"].endswith(f":{port}")]
        assert len(ids) == 1
        admin.client_kill_filter(_id=ids[0])
        wait_for(lambda: pubsub_port(app) not in (None, port), what="a new subscription")
        job.cancel()
        wait_for(lambda: states, what="the callback")
        assert states == [JobState.CANCELLED]
    finally:
        admin.close()
        app.backend.delete_namespace()
        app.close()
