"""Soft timeouts for tasks run outside the main thread (``--threads``).

SIGALRM reaches only the main thread, so a thread's soft timeout is an
asynchronous exception (``PyThreadState_SetAsyncExc``) raised by one
watchdog thread per process. Like SIGALRM, it lands when the task next
runs Python code: a call blocked inside C (a socket read without a
timeout) is stopped only by the supervisor's hard timeout.
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
    def __init__(self) -> None:
        self._reset()
        os.register_at_fork(after_in_child=self._reset)  # a forked child starts afresh

    def _reset(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int]] = []  # (deadline, token)
        self._armed: dict[int, int] = {}  # token -> thread ident
        self._fired: set[int] = set()
        self._tokens = itertools.count(1)
        self._thread: threading.Thread | None = None

    def arm(self, seconds: float) -> int:
        """Raise ``SoftTimeoutExpired`` in the calling thread in ``seconds``
        unless ``disarm`` comes first; returns the token for ``disarm``."""
        with self._cond:
            token = next(self._tokens)
            self._armed[token] = threading.get_ident()
            heapq.heappush(self._heap, (time.monotonic() + seconds, token))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="taskq-watchdog", daemon=True)
                self._thread.start()
            self._cond.notify()
        return token

    def disarm(self, token: int) -> None:
        """Cancel ``token``; an exception fired but not delivered yet is withdrawn."""
        with self._cond:
            tid = self._armed.pop(token, None)
            if token in self._fired:
                self._fired.discard(token)
                if tid is not None:
                    _set_async_exc(tid, None)  # NULL: clears a pending one

    def _run(self) -> None:
        with self._cond:
            while True:
                while self._heap and self._heap[0][1] not in self._armed:
                    heapq.heappop(self._heap)  # disarmed in time
                if not self._heap:
                    self._cond.wait()
                    continue
                deadline, token = self._heap[0]
                left = deadline - time.monotonic()
                if left > 0:
                    self._cond.wait(left)
                    continue
                heapq.heappop(self._heap)
                self._fired.add(token)
                _set_async_exc(self._armed[token], SoftTimeoutExpired)


watchdog = Watchdog()
