"""The transitions run as a function library (FCALL) or as scripts
(EVALSHA), and survive a server that lost its code."""

from __future__ import annotations

import pytest

from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig


def roundtrip(app) -> None:
    job = app.tasks["add"].delay(2, 3)
    c = Consumer(app, WorkerConfig(concurrency=1, block_timeout=0.05), "w-code")
    c.heartbeat.beat()
    for _ in range(20):
        c.step()
        if job.state.finished:
            break
    c.stopping.set()
    c.shutdown()
    assert job.result(timeout=1) == 5


@pytest.fixture
def adder(app):
    app.task(name="add", tombstone=True)(lambda a, b: a + b)
    return app


def test_functions_are_used_where_the_server_has_them(adder):
    roundtrip(adder)
    assert adder.backend.functions is True
    libs = adder.backend.client.execute_command("FUNCTION", "LIST", "LIBRARYNAME", adder.backend.library.name)
    assert libs


def test_scripts_are_used_when_functions_are_unavailable(adder):
    adder.backend.functions = False  # as on Redis < 7 or an ACL denying FUNCTION
    roundtrip(adder)
    assert adder.backend.functions is False


@pytest.mark.parametrize("mode", ["functions", "scripts"])
def test_code_lost_by_the_server_is_loaded_again(adder, mode):
    roundtrip(adder)
    if mode == "scripts":
        adder.backend.functions = False
        roundtrip(adder)
    adder.backend.client.execute_command("FUNCTION", "FLUSH")
    adder.backend.client.execute_command("SCRIPT", "FLUSH")
    roundtrip(adder)  # enqueue, blocking claim, settle: each reloads what it needs
    assert adder.backend.functions is (mode == "functions")
