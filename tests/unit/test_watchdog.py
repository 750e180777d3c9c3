"""Soft timeouts of tasks run outside the main thread: the watchdog raises
TaskTimeout in the thread that armed it, and only there, only if not
disarmed in time."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

import pytest

from taskq import TaskTimeout
from taskq.errors import ConfigurationError
from taskq.worker.config import WorkerConfig
from taskq.worker.executor import _SoftTimeout
from taskq.worker.watchdog import Watchdog


def in_thread(fn: Any) -> Any:
    """Run ``fn`` in a new thread; return what it returned or raised."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(fn())
        except BaseException as exc:
            box.append(exc)

    t = threading.Thread(target=target)
    t.start()
    t.join(30)
    assert not t.is_alive()
    return box[0]


def busy(seconds: float) -> str:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.005)
    return "slept through"


def test_a_thread_past_its_soft_timeout_gets_task_timeout_with_its_limit():
    def task() -> str:
        with _SoftTimeout(0.1):
            return busy(10)

    exc = in_thread(task)
    assert isinstance(exc, TaskTimeout)
    assert type(exc) is TaskTimeout  # reported under its public name
    assert str(exc) == "task exceeded its timeout of 0.1s"


def test_a_task_done_in_time_is_never_interrupted_later(monkeypatch):
    """The watchdog reads a clock of the test's, which stands still while the
    deadline is armed (however slowly a busy machine runs the task), then
    moves far past it."""
    from taskq.worker import watchdog as module

    clock = [1_000.0]
    monkeypatch.setattr(module, "time", SimpleNamespace(monotonic=lambda: clock[0], sleep=time.sleep))

    def task() -> str:
        with _SoftTimeout(0.2):
            busy(0.01)
        clock[0] += 3_600
        return busy(0.4)  # past the disarmed deadline, the watchdog checking all along

    assert in_thread(task) == "slept through"


def test_only_the_thread_that_armed_it_is_interrupted():
    dog = Watchdog()
    other_started = threading.Event()
    stop = threading.Event()

    def other() -> str:
        other_started.set()
        while not stop.is_set():
            time.sleep(0.005)
        return "untouched"

    box: list[Any] = []
    t = threading.Thread(target=lambda: box.append(other()))
    t.start()
    other_started.wait(10)

    def armed() -> str:
        token = dog.token()
        dog.arm(token, 0.05)
        try:
            return busy(10)
        finally:
            dog.disarm(token)

    assert isinstance(in_thread(armed), TaskTimeout)
    stop.set()
    t.join(10)
    assert box == ["untouched"]


def test_many_armed_threads_each_get_their_own_deadline():
    dog = Watchdog()
    results: dict[int, Any] = {}

    def task(i: int) -> None:
        token = dog.token()
        dog.arm(token, 0.05 if i % 2 else 30)
        try:
            results[i] = busy(0.5 if i % 2 == 0 else 10)
        except TaskTimeout:
            results[i] = "timeout"
        finally:
            dog.disarm(token)

    threads = [threading.Thread(target=task, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: "timeout" if i % 2 else "slept through" for i in range(6)}


def test_threads_must_be_positive():
    with pytest.raises(ConfigurationError, match="threads must be >= 1"):
        WorkerConfig(threads=0)


def test_deadlines_racing_the_end_of_tasks_never_hang_leak_or_escape():
    """Many threads whose work ends around their deadline: the exception
    lands anywhere, also inside the watchdog's own calls; none may escape
    the executor's handling, none may arrive late, nothing may hang. Between
    the races, a task far past its deadline must time out and one far
    inside it must complete, in every thread, however the CPU is shared."""
    from taskq.worker.watchdog import watchdog

    escaped: list[BaseException] = []
    wrong: list[str] = []
    counts = {"raced": 0, "timeouts": 0, "completed": 0}

    def spin(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            pass

    def run(deadline: float, work: float) -> bool:
        """True if the work timed out, as the executor handles it."""
        soft = _SoftTimeout(deadline)
        try:
            with soft:
                spin(work)
        except TaskTimeout:
            soft.close()  # as the executor does
            return True
        return False

    def worker(seed: int) -> None:
        try:
            stop = time.monotonic() + 1.5
            i = seed
            while time.monotonic() < stop:
                i += 1
                # ends within a watchdog tick of its deadline, either side
                run(0.002, 0.0005 * (i % 12))
                counts["raced"] += 1
                if i % 4 == 0:
                    if run(0.002, 10):
                        counts["timeouts"] += 1
                    else:
                        wrong.append("10 s of work outlived a 2 ms deadline")
                    if run(10, 0):
                        wrong.append("no work timed out against a 10 s deadline")
                    else:
                        counts["completed"] += 1
        except BaseException as exc:
            escaped.append(exc)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    assert escaped == []
    assert wrong == []
    assert counts["raced"] > 0 and counts["timeouts"] > 0 and counts["completed"] > 0
    assert watchdog._armed == {} and watchdog._fired == set()
