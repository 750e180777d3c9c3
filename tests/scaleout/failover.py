"""A producer of durable jobs that carries on through a failover, and the
check that no acknowledged job was lost."""

from __future__ import annotations

import threading
import time
from typing import Any

from taskq import BrokerUnavailable, DurabilityUnavailable, JobState, TaskQ
from tests.conftest import wait_for


class DurableProducer(threading.Thread):
    """Enqueues ``add(i, 1)`` with ``durable=True`` until stopped; keeps the
    ids the server acknowledged, and counts refusals (a failover under way)."""

    def __init__(self, app: TaskQ, pause: float = 0.005) -> None:
        super().__init__(daemon=True)
        self.app = app
        self.pause = pause
        self.acknowledged: list[str] = []
        self.refused = 0
        self.errors: list[str] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        i = 0
        while not self.stopping.is_set():
            try:
                job = self.app.tasks["add"].apply_async((i, 1), durable=True)
            except (BrokerUnavailable, DurabilityUnavailable) as exc:
                self.refused += 1
                self.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.05)
                continue
            self.acknowledged.append(job.id)
            i += 1
            time.sleep(self.pause)

    def stop(self) -> None:
        self.stopping.set()
        self.join(30)


def assert_every_acknowledged_job_finishes(app: TaskQ, ids: list[str], timeout: float = 60.0) -> None:
    """Each acknowledged job exists and succeeds (none lost by the failover)."""
    def states() -> dict[str, Any]:
        return {jid: app.job(jid).state for jid in ids}

    def all_done() -> bool:
        return all(s == JobState.SUCCEEDED for s in states().values())

    try:
        wait_for(all_done, timeout, interval=0.25, what="every acknowledged job to succeed")
    except AssertionError:
        missing = {jid: s for jid, s in states().items() if s != JobState.SUCCEEDED}
        raise AssertionError(f"{len(missing)} of {len(ids)} acknowledged jobs not succeeded: "
                             f"{list(missing.items())[:10]}") from None
