"""The scheduler of a namespace laid out with a slot per queue (the
``queue`` key layout): one :class:`Scheduler` per queue's slot, each a
thread that promotes, reaps, runs the flow pass, trims and fires the
periodic tasks of its queue, exactly as the one scheduler of a one-slot
namespace does. Queues that get a slot later (a first enqueue elsewhere)
are picked up within ``REFRESH`` seconds.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..errors import TaskQError
from .scheduler import Scheduler

if TYPE_CHECKING:
    from ..app import TaskQ

log = logging.getLogger("taskq.scheduler")
REFRESH = 2.0  # seconds between reads of the registry of queue slots


class SlotSchedulers:
    """``Scheduler``'s ``run`` / ``stop`` / ``stop_periodics`` over every queue's slot."""

    def __init__(self, app: TaskQ, *, reaper: bool = True) -> None:
        self.app = app
        self.reaper = reaper
        self.running: dict[str, tuple[Scheduler, threading.Thread]] = {}
        self.stop_event = threading.Event()
        self.periodics_stopped = False
        self._lock = threading.Lock()

    def refresh(self) -> None:
        """Start a scheduler for each queue slot that has none (the periodic
        tasks' queues get their slot here)."""
        slots = self.app.slots
        by_queue: dict[str, list[str]] = {}
        for name in self.app.periodics:
            by_queue.setdefault(slots.shard_of(self.app.options_for(name).queue, name), []).append(name)
        for queue in by_queue:
            slots.queue(queue)
        for queue in slots.queues():
            with self._lock:
                if queue in self.running or self.stop_event.is_set():
                    continue
                periodics = [self.app.periodics[n] for n in by_queue.get(queue, [])]
                sched = Scheduler(self.app, reaper=self.reaper, store=slots.queue(queue), periodics=periodics)
                if self.periodics_stopped:
                    sched.stop_periodics()
                thread = threading.Thread(target=sched.run, name=f"taskq-scheduler-{queue}", daemon=True)
                self.running[queue] = (sched, thread)
                thread.start()

    def run(self) -> None:
        """Run until ``stop()``; a registry read that fails is tried again."""
        failing = False
        while not self.stop_event.is_set():
            try:
                self.refresh()
                failing = False
            except TaskQError as exc:
                if not failing:
                    log.warning("cannot read the queues' slots (%s); retrying", exc)
                failing = True
            self.stop_event.wait(REFRESH)
        for _, thread in list(self.running.values()):
            thread.join(timeout=5)

    def stop_periodics(self) -> None:
        with self._lock:
            self.periodics_stopped = True
            for sched, _ in self.running.values():
                sched.stop_periodics()

    def stop(self) -> None:
        with self._lock:
            self.stop_event.set()
            self.periodics_stopped = True
            for sched, _ in self.running.values():
                sched.stop()


def make_scheduler(app: TaskQ, *, reaper: bool = True) -> Scheduler | SlotSchedulers:
    """The scheduler for the app's key layout."""
    if app.settings.key_layout == "queue":
        return SlotSchedulers(app, reaper=reaper)
    return Scheduler(app, reaper=reaper)
