"""One background listener per app for ``job.on_finish`` callbacks.

Finishing scripts publish ``"<id> <state>"`` on the namespace's events
channel for jobs someone watches; this thread subscribes once and
dispatches. No thread per job, no polling.

A lost connection (a failover, a restart) is logged once; the listener
subscribes again (on whatever server is now the master), closing the lost
subscription, and reads every watched job once more to fire those that
finished while it was away. Retries pause up to a fifth of
``heartbeat_timeout``. A connection that is silently dead (a server gone
without closing it, a network partition) gives no error to a read: after
PING_AFTER seconds with nothing read the listener sends a PING, and with no
answer within PONG_WITHIN seconds it counts the connection as lost.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from .appview import AppView
from .job import Job, JobState, not_found
from .waits import FIRST_PAUSE, retry_pause_cap

log = logging.getLogger("taskq.events")
Callback = Callable[[Job[Any], JobState], Any]
PING_AFTER = 5.0  # seconds with nothing read from the subscription before a PING checks it
PONG_WITHIN = 5.0  # seconds for the answer (or anything else) to come; then the connection is lost
PING_MESSAGE = "taskq-events-liveness"


class Liveness:
    """Whether a subscription's connection still answers (see the module's docstring)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.heard = time.monotonic()  # when something was last read
        self.pinged = 0.0  # when the PING not answered yet went; 0: none

    def check(self, pubsub: Any, msg: Any) -> None:
        """Note what a read returned; PING after a silence, raise
        ``ConnectionError`` when the PING went unanswered."""
        now = time.monotonic()
        if msg is not None:
            self.heard, self.pinged = now, 0.0
        elif self.pinged:
            if now - self.pinged > PONG_WITHIN:
                raise ConnectionError(f"no answer to a PING within {PONG_WITHIN:g}s")
        elif now - self.heard > PING_AFTER:
            pubsub.ping(PING_MESSAGE)
            self.pinged = now


class EventListener:
    def __init__(self, app: AppView) -> None:
        self.app = app
        self._callbacks: dict[str, list[tuple[Job[Any], Callback]]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._pubsub: Any = None

    def _ensure_started(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._pubsub = self._subscribe()  # subscribed before any watch
            self._thread = threading.Thread(target=self._run, name="taskq-events", daemon=True)
            self._thread.start()

    def on_finish(self, job: Job[Any], fn: Callback) -> None:
        self._ensure_started()
        entry = (job, fn)
        with self._lock:
            self._callbacks.setdefault(job.id, []).append(entry)
        try:
            state, _ = job.store.watch(job.id)
            if not state:  # it would wait for an outcome that never comes
                raise not_found(self.app, job.id)
        except Exception:  # not registered: a call again after a server error adds one callback, not two
            with self._lock:
                entries = self._callbacks.get(job.id, [])
                entries[:] = [e for e in entries if e is not entry]
                if not entries:
                    self._callbacks.pop(job.id, None)
            raise
        if JobState(state).finished:
            self._fire(job.id, JobState(state))

    def _fire(self, job_id: str, state: JobState) -> None:
        with self._lock:
            entries = self._callbacks.pop(job_id, [])
        for job, fn in entries:
            try:
                fn(job, state)
            except Exception:
                log.exception("on_finish callback for job %s raised", job_id)

    def _run(self) -> None:
        down = ""  # the error that cut the listener off, until it is subscribed and caught up again
        pause = FIRST_PAUSE
        alive = Liveness()
        while not self._stop.is_set():
            try:
                if down:
                    self._resubscribe()
                    alive.reset()
                msg = self._pubsub.get_message(timeout=0.5)
                alive.check(self._pubsub, msg)
            except Exception as exc:  # connection lost (a failover, a restart): resubscribe
                if not down:
                    log.warning("event listener lost its connection (%s); resubscribing", exc)
                down = down or f"{type(exc).__name__}: {exc}"
                if self._stop.wait(pause):
                    return
                pause = min(pause * 2, retry_pause_cap(self.app))
                continue
            if down:
                log.info("event listener resubscribed")
                down, pause = "", FIRST_PAUSE
            if not msg or msg.get("type") not in ("message", "pmessage"):  # a pong, too
                continue
            job_id, _, state = msg["data"].decode().partition(" ")
            if job_id in self._callbacks:
                self._fire(job_id, JobState(state))

    def _resubscribe(self) -> None:
        """A new subscription in place of the lost one (closed), then the
        outcomes published while away: every watched job is read again (on
        any failure all of it is done again, on the next try)."""
        old, self._pubsub = self._pubsub, None
        if old is not None:
            with contextlib.suppress(Exception):
                old.close()
        self._pubsub = self._subscribe()
        for job_id, entries in list(self._callbacks.items()):
            if not entries:
                continue
            state, _ = entries[0][0].store.watch(job_id)
            if state and JobState(state).finished:
                self._fire(job_id, JobState(state))

    def _subscribe(self) -> Any:
        """The namespace's events: of every queue's slot in the ``queue`` key layout."""
        return self.app.backend.subscribe_events(every_slot=self.app.slots.per_queue)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
        if self._pubsub is not None:
            try:
                self._pubsub.close()
            except Exception:
                pass
