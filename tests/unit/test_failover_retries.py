"""Without a server: a result wait, the event listener and the scheduler
loop each carry on through a lost server (a failover) as documented in
docs/deployment-scaling.md."""

from __future__ import annotations

import asyncio
import logging
import threading
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest

from taskq import BrokerUnavailable, ResultTimeout, TaskQ
from taskq.events import EventListener
from taskq.waits import adrive, drive, outcome_steps, retry_pause_cap
from taskq.worker.scheduler import Scheduler

LOST = BrokerUnavailable("cannot reach the server: Connection refused")


def fake_app(heartbeat_timeout: float = 1.0, backend: Any = None) -> Any:
    settings = SimpleNamespace(heartbeat_timeout=heartbeat_timeout, succeeded_ttl=60.0, failed_ttl=60.0)
    return SimpleNamespace(settings=settings, backend=backend, slots=SimpleNamespace(per_queue=False))


class FlakyWaits:
    """Watch and wait replies in order; an exception in the list is raised."""

    def __init__(self, script: list[Any]) -> None:
        self.script = script
        self.calls: list[str] = []

    def _next(self, op: str) -> Any:
        self.calls.append(op)
        reply = self.script.pop(0)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    def watch(self, job_id: str, within: float | None = None) -> Any:
        return self._next("watch")

    def wait_outcome(self, job_id: str, timeout: float) -> Any:
        return self._next("wait")


DONE = msgpack.packb([b"succeeded", b"blob"])


def test_a_result_wait_retries_a_lost_server_and_watches_again():
    backend = FlakyWaits([("scheduled", b""), LOST, LOST, ("queued", b""), DONE])
    assert drive(outcome_steps(fake_app(), "j1", 5.0), backend, "j1") == ("succeeded", b"blob")
    assert backend.calls == ["watch", "wait", "watch", "watch", "wait"]  # re-watched before waiting again


def test_an_outcome_pushed_while_the_server_was_away_is_found_by_the_new_watch():
    backend = FlakyWaits([("active", b""), LOST, ("succeeded", b"v")])
    assert drive(outcome_steps(fake_app(), "j1", 5.0), backend, "j1") == ("succeeded", b"v")


def test_a_server_lost_past_the_waits_own_timeout_raises():
    backend = FlakyWaits([("active", b"")] + [LOST] * 100)
    with pytest.raises(BrokerUnavailable):
        drive(outcome_steps(fake_app(), "j1", 0.3), backend, "j1")
    backend = FlakyWaits([("active", b""), ("active", b"")])  # no server lost: a plain timeout
    with pytest.raises(ResultTimeout):
        drive(outcome_steps(fake_app(), "j1", 0.0), backend, "j1")


def test_the_awaited_wait_retries_the_same_way():
    class Async:
        def __init__(self, inner: FlakyWaits) -> None:
            self.inner = inner

        async def watch(self, job_id: str, within: float | None = None) -> Any:
            return self.inner.watch(job_id, within)

        async def wait_outcome(self, job_id: str, timeout: float) -> Any:
            return self.inner.wait_outcome(job_id, timeout)

    inner = FlakyWaits([("scheduled", b""), LOST, ("queued", b""), DONE])
    assert asyncio.run(adrive(outcome_steps(fake_app(), "j1", 5.0), Async(inner), "j1")) == ("succeeded", b"blob")
    assert inner.calls == ["watch", "wait", "watch", "wait"]


class LostPubSub:
    def __init__(self) -> None:
        self.closed = False

    def get_message(self, timeout: float = 0.0) -> Any:
        raise ConnectionError("Connection closed by server.")

    def close(self) -> None:
        self.closed = True


class QuietPubSub(LostPubSub):
    def get_message(self, timeout: float = 0.0) -> Any:
        threading.Event().wait(min(timeout, 0.01))
        return None


def test_the_event_listener_resubscribes_redoes_its_catch_up_and_logs_once(caplog):
    pubsubs = [LostPubSub(), QuietPubSub(), QuietPubSub()]
    subscribed = []
    fired = threading.Event()
    watches = iter([LOST, LOST, ("succeeded", b"")])  # the catch-up fails twice, then finds the outcome

    def subscribe_events(every_slot: bool = False) -> Any:
        subscribed.append(pubsubs.pop(0) if pubsubs else QuietPubSub())
        return subscribed[-1]

    def watch(job_id: str) -> Any:
        reply = next(watches)
        if isinstance(reply, BaseException):
            raise reply
        return reply

    backend = SimpleNamespace(subscribe_events=subscribe_events, watch=watch)
    listener = EventListener(fake_app(backend=backend))
    listener._callbacks["j1"] = [(SimpleNamespace(id="j1", store=backend), lambda job, state: fired.set())]
    with caplog.at_level(logging.INFO, logger="taskq.events"):
        listener._ensure_started()
        assert fired.wait(10), "the catch-up after resubscribing never ran again"
        listener.stop()
    assert [p.closed for p in subscribed[:-1]] == [True] * (len(subscribed) - 1)  # every replaced one closed
    lost = [r for r in caplog.records if "lost its connection" in r.getMessage()]
    assert len(lost) == 1 and len(subscribed) >= 3


def test_the_scheduler_retries_a_lost_server_within_a_fifth_of_heartbeat_timeout(monkeypatch):
    app = TaskQ("t", "redis://127.0.0.1:1/0", heartbeat_timeout=1.0)
    scheduler = Scheduler(app)
    pauses: list[float] = []

    def tick(now_ms: int | None = None) -> float:
        raise LOST

    def wait(seconds: float) -> bool:
        pauses.append(seconds)
        return len(pauses) >= 8

    monkeypatch.setattr(scheduler, "tick", tick)
    monkeypatch.setattr(scheduler.stop_event, "wait", wait)
    scheduler.run()
    assert max(pauses) == pytest.approx(0.2) and pauses[0] < 0.2
    app.close()


def test_every_retry_pause_is_capped_at_a_fifth_of_heartbeat_timeout_and_2s():
    assert [retry_pause_cap(fake_app(hb)) for hb in (0.5, 3.0, 10.0, 60.0)] == [0.1, 0.6, 2.0, 2.0]
