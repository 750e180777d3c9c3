"""The heartbeat thread of a child: renews the lease on every held job and
delivers cancel requests. A thread of its own, so a CPU-bound task cannot
starve it (the GIL switches threads every few milliseconds)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from ..errors import TaskQError

if TYPE_CHECKING:
    from ..storage.backend import Backend

log = logging.getLogger("taskq.worker")


def watch_gap_ms(heartbeat_timeout: float) -> int:
    """The longest gap between two passes of the reapers' watch that counts
    whole; a longer one (a server pause, every process cut off) counts as
    this much (``watch_tick`` in ``_lib.lua``). Half the timeout: below it,
    so a live worker cut off by a gap still has half a timeout to beat."""
    return int(heartbeat_timeout * 1000) // 2


class Heartbeat(threading.Thread):
    """Beats in each storage the worker claims from (one, or each queue's slot
    in the ``queue`` key layout)."""

    def __init__(self, backend: Backend | Sequence[Backend], worker_id: str, interval: float, info_ttl_ms: int,
                 info: dict[str, str], on_cancel: Callable[[dict[str, int]], None],
                 watch_gap_ms: int | None = None) -> None:
        super().__init__(name="taskq-heartbeat", daemon=True)
        self.backends = list(backend) if isinstance(backend, Sequence) else [backend]
        self.worker_id = worker_id
        self.interval = interval
        self.info_ttl_ms = info_ttl_ms
        self.info = info
        self.on_cancel = on_cancel
        self.watch_gap_ms = watch_gap_ms  # each beat is a pass of the reapers' watch too
        self.stopped = threading.Event()
        self.failing = False

    def beat(self) -> None:
        # the static fields go with every beat: a worker reaped while alive (a
        # long pause), or a server restarted without its data, loses its hash
        for backend in self.backends:
            _, cancels = backend.heartbeat(self.worker_id, self.info_ttl_ms, self.info, self.watch_gap_ms)
            if cancels:
                self.on_cancel(cancels)

    def run(self) -> None:
        while not self.stopped.wait(self.interval):
            try:
                self.beat()
                if self.failing:
                    log.info("heartbeat of %s restored", self.worker_id)
                self.failing = False
            except TaskQError as exc:
                if not self.failing:
                    log.warning("heartbeat of %s failed: %s (retrying)", self.worker_id, exc)
                self.failing = True
            except Exception:
                log.exception("heartbeat thread error")

    def stop(self) -> None:
        self.stopped.set()


def kill_self() -> None:
    """End this process at once (a forced cancel); the supervisor reaps it."""
    os.kill(os.getpid(), signal.SIGKILL)
