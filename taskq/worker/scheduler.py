"""The scheduler: promotes due jobs, fires periodic tasks, and reaps dead
workers. Runs in every supervisor (a thread) and standalone as
``taskq scheduler``; any number may run at once (every move is one script).

``tick(now_ms)`` does one pass and returns how long to sleep; ``run()``
sleeps on the server until the next due time or until an earlier job
arrives, never on a fixed polling interval.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

from ..embedded import ensure_embedded_server
from ..enqueue import build_job
from ..errors import BrokerRefused, BrokerUnavailable, TaskQError
from ..storage.records import EnqueueRequest
from ..waits import retry_pause_cap
from .heartbeat import watch_gap_ms
from .outbox import deliver_outbox
from .outcome import error_entry

if TYPE_CHECKING:
    from ..app import TaskQ
    from ..cron import Periodic
    from ..storage.backend import Backend

log = logging.getLogger("taskq.scheduler")
PROMOTE_BATCH = 5000
FLOW_BATCH = 1000
TRIM_EVERY_MS = 60_000
SERVER_TIMER_SLACK = 0.25  # seconds: below this the scheduler sleeps on its own clock


class Reaper:
    """Finds workers whose heartbeat stopped and returns their jobs.

    A worker is reaped only once the namespace has watched its heartbeat
    stay silent for a whole ``heartbeat_timeout`` of server time. The watch
    lives on the server (``reaper_pass.lua``), and every reaper's pass and
    every worker's heartbeat carries it on, so a dead worker is found within
    ``heartbeat_timeout`` + a pass while any process of the namespace lives,
    however short-lived each one is. A gap in the passes longer than half
    the timeout (a server pause, a time when no process could reach the
    server) counts as half a timeout only, so after a stall every live
    worker has half a timeout to beat again: a stall never causes a
    stampede. A server clock that went back starts the watch over; a
    heartbeat from before it, later than now, is as old as the watch.
    """

    def __init__(self, app: TaskQ, store: Backend | None = None) -> None:
        self.app = app
        self.fixed = store  # one queue's slot in the queue key layout
        s = app.settings
        self.timeout_ms = int(s.heartbeat_timeout * 1000)
        self.max_gap_ms = watch_gap_ms(s.heartbeat_timeout)
        self.caps = (s.failed_max, s.error_history, int(s.failed_ttl * 1000))
        self.last_tick_ms: int | None = None

    @property
    def store(self) -> Backend:
        return self.fixed if self.fixed is not None else self.app.backend

    def tick(self, now_ms: int | None = None) -> list[str]:
        """One pass (``now_ms``: the server's clock if None); returns the ids of workers reaped."""
        restart, _, now, silent = self.store.reaper_pass(
            self.timeout_ms, self.max_gap_ms, now_ms="" if now_ms is None else now_ms)
        if restart == "gap" and self.last_tick_ms is not None:
            log.info("no process of the namespace reached the server for over %.1fs: the gap counts as that "
                     "much of the watch of heartbeats", self.max_gap_ms / 1000)
        elif restart == "clock":
            log.info("the server's clock went back: the watch of heartbeats starts over")
        self.last_tick_ms = now
        reaped = []
        for wid, hb in silent:
            if self.reap(wid, hb):
                reaped.append(wid)
        return reaped

    def reap(self, worker_id: str, expected_hb: int | None) -> bool:
        blob = error_entry(None, 0, kind="lost", exc_type="WorkerLost",
                           message="worker lost (its heartbeat stopped)")
        result = self.store.reap_worker(worker_id, expected_hb=expected_hb, caps=self.caps, lost_blob=blob)
        if result is None:
            return False
        if result:
            log.warning("worker %s is gone: %s", worker_id,
                        ", ".join(f"job {j} {o}" for j, o in result.items()))
        return True


class Scheduler:
    """The scheduler of a namespace, or (``store``, ``periodics``) of one
    queue's slot and the periodic tasks that fire into it (the queue key
    layout: see ``slot_scheduler.py``)."""

    def __init__(self, app: TaskQ, *, reaper: bool = True, store: Backend | None = None,
                 periodics: list[Periodic] | None = None) -> None:
        self.app = app
        self.fixed = store
        self.periodics = periodics
        self.reaper = Reaper(app, store) if reaper else None
        self.reap_every_ms = max(100, min(1000, int(app.settings.heartbeat_timeout * 1000) // 5))
        self.retry_cap = retry_pause_cap(app)  # a new master (a failover) is found well within heartbeat_timeout
        self.next_reap_ms = 0
        self.next_trim_ms = 0
        self.stop_event = threading.Event()
        # Set once the worker begins shutting down: no periodic tick is
        # enqueued after stop_periodics() returns (the lock covers each send).
        self.periodics_stopped = False
        self._fire_lock = threading.Lock()
        self.failing: dict[str, str] = {}  # periodic task -> the error last logged for it

    # ---------------------------------------------------------------- one pass

    @property
    def b(self) -> Backend:
        return self.fixed if self.fixed is not None else self.app.backend

    def tick(self, now_ms: int | None = None) -> float:
        """Promote due jobs, fire due periodic ticks, reap; seconds to sleep."""
        b = self.b
        arg = "" if now_ms is None else now_ms
        started: int | None = None
        while True:
            moved, next_due, server_now = b.promote(PROMOTE_BATCH, now_ms=arg)
            if started is None:
                started = server_now
            if moved < PROMOTE_BATCH:
                break
        now = server_now
        if self.app.slots.per_queue:
            deliver_outbox(self.app, b)
        wake = now + 60_000
        if next_due >= 0:
            wake = min(wake, next_due)
        wake = min(wake, self.flow_pass(arg))
        # Ticks are judged at the time this pass began: promoting a large
        # backlog first (a second per 100,000 jobs) does not make a tick that
        # was on time look missed to catch_up="skip". One that fell due
        # meanwhile is next_after(started) <= now: the next pass, at once.
        for periodic in self.app.periodics.values() if self.periodics is None else self.periodics:
            if self.periodics_stopped:
                break
            try:
                nxt = self.fire(periodic, started)
            except (BrokerUnavailable, BrokerRefused):
                raise
            except Exception as exc:  # this task's ticks only: never the other tasks, promotion or the reaper
                self._periodic_failed(periodic, exc)
            else:
                self.failing.pop(periodic.name, None)
                if nxt is not None:
                    wake = min(wake, nxt)
        if self.reaper is not None:
            # due, or the server's clock went back since the last reap was planned
            if now >= self.next_reap_ms or self.next_reap_ms - now > self.reap_every_ms:
                # the server's clock at the pass itself (None), not at this
                # pass's start: a beat written meanwhile is not "later than now"
                self.reaper.tick(now_ms)
                self.next_reap_ms = now + self.reap_every_ms
            wake = min(wake, self.next_reap_ms)
        if now >= self.next_trim_ms or self.next_trim_ms - now > TRIM_EVERY_MS:
            s = self.app.settings
            for _ in range(50):  # at most 1,000 entries per index and call: keep Redis responsive
                if b.trim_finished(int(s.failed_ttl * 1000), int(s.succeeded_ttl * 1000)) < 1000:
                    break
            self.next_trim_ms = now + TRIM_EVERY_MS
        return max(0.0, (wake - now) / 1000)

    def flow_pass(self, now_ms: int | str) -> int:
        """Each queue's flow pass (held jobs whose limit allows them back to
        their queue, expired jobs finished); returns the next time one is due."""
        b, s = self.b, self.app.settings
        wake = 2**62
        for queue in b.queue_names():
            while True:
                moved, expired, nxt = b.flow_pass(queue, int(s.succeeded_ttl * 1000), s.done_max, FLOW_BATCH,
                                                  now_ms=now_ms)
                if moved < FLOW_BATCH and expired < FLOW_BATCH:
                    break
            if nxt >= 0:
                wake = min(wake, nxt)
        return wake

    def fire(self, periodic: Periodic, now_ms: int) -> int | None:
        """Enqueue the due ticks of one periodic task; returns its next tick
        (None: its schedule has ended)."""
        b = self.b
        last = b.cron_last(periodic.name)
        if last is None:
            first = periodic.next_after(now_ms)
            last = b.cron_init(periodic.name, now_ms if first is None else first - 1)
        ticks = periodic.due_ticks(last, now_ms)
        missed = periodic.next_after(last)
        if not ticks and missed is not None and missed <= now_ms:  # catch_up="skip": jump past the missed ones
            b.fire_periodic(periodic.name, now_ms, self._job(periodic, now_ms), enqueue=False)
        for tick in ticks:
            with self._fire_lock:
                if self.periodics_stopped:
                    return None
                fired = b.fire_periodic(periodic.name, tick, self._job(periodic, tick))
            if fired:
                log.info("periodic %s fired for tick %d", periodic.name, tick)
        return periodic.next_after(max(now_ms, last))

    def _periodic_failed(self, periodic: Periodic, exc: Exception) -> None:
        """Logs a periodic task whose tick cannot be enqueued, once per error."""
        text = f"{type(exc).__name__}: {exc}"
        if self.failing.get(periodic.name) != text:
            self.failing[periodic.name] = text
            log.error("periodic %s cannot be enqueued (%s); its ticks wait until it can", periodic.name, text,
                      exc_info=not isinstance(exc, TaskQError))

    def _job(self, periodic: Periodic, tick: int) -> EnqueueRequest:
        options = self.app.options_for(periodic.name)
        req = build_job(self.app.settings, periodic.name, periodic.args, periodic.kwargs, options, {},
                        job_id=f"cron:{periodic.name}:{tick}")
        return self.app.slots.place(req, key=periodic.name)  # a sharded queue: always the same shard

    # ---------------------------------------------------------------- loop

    def run(self) -> None:
        """Run until ``stop()``; survives a lost server and a pass that fails
        for any other reason (backs off, logs once)."""
        down = ""  # "server" (lost) or "error" (a pass failed) until a pass succeeds
        pause = 0.1
        while not self.stop_event.is_set():
            try:
                if not self.app.settings.redis_url and self.app._backend is None:
                    # an embedded server still loading: waited for until stop()
                    ensure_embedded_server(stop=self.stop_event.is_set)
                    if self.stop_event.is_set():
                        break
                sleep = self.tick()
                if down == "server":
                    log.warning("scheduler reconnected")
                down, pause = "", 0.1
                if sleep > SERVER_TIMER_SLACK:
                    # The server fires blocking timeouts on its timer tick (every
                    # 100 ms at the default hz 10): block there until shortly
                    # before the due time, sleep the rest here.
                    self.b.wait_schedule_change(min(sleep - SERVER_TIMER_SLACK / 2, 5.0))
                elif sleep > 0:
                    self.stop_event.wait(sleep)
            except Exception as exc:  # never ends the loop: delayed jobs, retries and the reaper depend on it
                if not down:
                    if isinstance(exc, TaskQError):
                        log.warning("scheduler lost the server (%s); retrying", exc)
                    else:
                        log.exception("scheduler pass failed; retrying")
                down = down or ("server" if isinstance(exc, TaskQError) else "error")
                if self.stop_event.wait(pause):
                    break
                pause = min(pause * 2, self.retry_cap)

    def stop_periodics(self) -> None:
        """Enqueue no more periodic ticks (promotion and reaping go on)."""
        with self._fire_lock:
            self.periodics_stopped = True

    def stop(self) -> None:
        self.stop_periodics()
        self.stop_event.set()


def run_recovery(app: TaskQ) -> dict[str, list[str]]:
    """A manual recovery pass (``taskq recover``): reap every worker whose
    heartbeat is older than ``heartbeat_timeout`` on the server's clock
    (in each queue's slot, in the queue key layout)."""
    timeout_ms = int(app.settings.heartbeat_timeout * 1000)
    out: dict[str, list[str]] = {}
    for b in app.slots.all():
        now = b.server_time_ms()
        reaper = Reaper(app, b)
        for wid, hb in b.workers():
            if now - hb >= timeout_ms:
                before = set(b.worker_details([wid])[0][1])
                if reaper.reap(wid, hb):
                    out[wid] = sorted({*out.get(wid, []), *(j.decode() for j in before)})
        b.promote(PROMOTE_BATCH)
    return out

