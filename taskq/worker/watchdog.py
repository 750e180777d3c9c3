"""Soft timeouts for tasks run outside the main thread (``--threads``).

SIGALRM reaches only the main thread, so a thread's soft timeout is an
asynchronous exception (``PyThreadState_SetAsyncExc``) raised by one
watchdog thread per process, within about 5 ms of the deadline (50 ms if
nothing else was armed). Like SIGALRM, it lands when the task next runs
Python code: a call blocked inside C (a socket read without a timeout) is
stopped only by the supervisor's hard timeout.
"""

from __future__ import annotations

import ctypes
import heapq
import itertools
import os
import threading
import time

from ..errors import TaskTimeout


def _set_async_exc(tid: int, exc: type[BaseException] | None) -> None:
    """Make thread ``tid`` raise ``exc`` at its next bytecode (None: withdraw it)."""
    ctypes.pythonapi.PyThreadState_SetAsyncExc(ctypes.c_ulong(tid), ctypes.py_object(exc) if exc else None)


class SoftTimeoutExpired(TaskTimeout):
    """Raised asynchronously in a thread; the executor reports it as ``TaskTimeout``."""

    def __init__(self, *args: object) -> None:
        super().__init__(*(args or ("task exceeded its timeout",)))


class Watchdog:
    """Fires each armed deadline at most once. ``arm``/``disarm`` take only a
    plain lock (acquired in C: an asynchronous exception cannot land between
    taking it and the ``with`` block that releases it), and the watchdog
    thread polls instead of being notified (``Condition.notify`` is Python
    code that such an exception could interrupt halfway)."""

    TICK = 0.005  # seconds between checks while something is armed
    IDLE_TICK = 0.05  # ... and while nothing is

    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child starts afresh

    def _reset(self) -> None:
        self._lock = threading.Lock()
        self._heap: list[tuple[float, int]] = []  # (deadline, token)
        self._armed: dict[int, int] = {}  # token -> thread ident
        self._fired: set[int] = set()
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None

    def token(self) -> int:
        """A fresh token for ``arm``. Hold it before arming: the exception may
        land as soon as ``arm`` registers it, before ``arm`` returns."""
        return next(self._tokens)

    def arm(self, token: int, seconds: float) -> None:
        """Raise ``SoftTimeoutExpired`` in the calling thread in ``seconds``
        unless ``disarm(token)`` comes first."""
        with self._lock:
            start = self._thread is None
            if start:
                self._thread = threading.Thread(target=self._run, name="taskq-watchdog", daemon=True)
        if start:  # before anything is armed: nothing can interrupt the start
            self._thread.start()  # type: ignore[union-attr]
        with self._lock:
            self._armed[token] = threading.get_ident()
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))

    def disarm(self, token: int) -> None:
        """Cancel ``token`` (idempotent); an exception fired but not delivered
        yet is withdrawn, so none arrives once this returns."""
        with self._lock:
            tid = self._armed.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                if tid is not None:
                    _set_async_exc(tid, None)

    def _run(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                while self._heap and (self._heap[0][1] not in self._armed or self._heap[0][0] <= now):
                    _, token = heapq.heappop(self._heap)
                    tid = self._armed.get(token)
                    if tid is not None:  # still armed and due
                        self._fired.add(token)
                        _set_async_exc(tid, SoftTimeoutExpired)
                busy = bool(self._heap)
            time.sleep(self.TICK if busy else self.IDLE_TICK)


watchdog = Watchdog()
