"""The supervisor: starts the children, replaces a child that dies (and
returns its jobs at once), enforces hard timeouts, runs the scheduler, and
coordinates shutdown.

Signal handlers only set flags; the loop does the work.
"""

from __future__ import annotations

import logging
import multiprocessing as mp
import multiprocessing.connection
import os
import random
import secrets
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ..embedded import ensure_embedded_server
from ..errors import ServerLoading, TaskQError, TaskTimeout
from ..options import TaskOptions
from ..storage.backend import redact_url
from .config import WorkerConfig
from .outcome import error_entry
from .process import child_main
from .scheduler import Scheduler
from .shared import Slot
from .slot_scheduler import SlotSchedulers, make_scheduler

if TYPE_CHECKING:
    from ..app import TaskQ

log = logging.getLogger("taskq.worker")
_ctx = mp.get_context("fork")


@dataclass
class Child:
    index: int
    worker_ids: list[str]  # one per consumer thread
    process: Any
    slots: list[Slot]  # the same order
    timed_out: str = ""  # id of the job whose hard timeout killed this child
    timed_out_slot: int = -1  # the consumer that ran it
    started: float = field(default_factory=time.monotonic)

    @property
    def worker_id(self) -> str:
        return self.worker_ids[0]


class Supervisor:
    def __init__(self, app: TaskQ, config: WorkerConfig | None = None,
                 log_setup: Callable[[], None] | None = None) -> None:
        self.app = app
        self.config = config or WorkerConfig()
        self.log_setup = log_setup
        self.children: dict[int, Child] = {}
        self.unreaped: list[tuple[Child, str]] = []  # dead children whose jobs are not returned yet
        self.stop_requested = 0  # 1 graceful, 2 immediate
        self.scheduler: Scheduler | SlotSchedulers | None = None
        self._scheduler_thread: threading.Thread | None = None
        s = app.settings
        self.reap_caps = (s.failed_max, s.error_history, int(s.failed_ttl * 1000))
        self.host = socket.gethostname()

    # ---------------------------------------------------------------- signals

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.stop_requested += 1

    def install_signals(self) -> None:
        signal.signal(signal.SIGTERM, self._on_signal)
        signal.signal(signal.SIGINT, self._on_signal)

    # ---------------------------------------------------------------- startup

    def preflight(self) -> None:
        """Check the server: reachable, and not evicting keys. A server still
        loading its data set (just restarted) is waited for, with backoff,
        until it answers or a signal asks this worker to stop."""
        if not self.app.settings.redis_url:
            # the embedded server loading its data is waited for here, where a
            # signal ends the wait (the app's own wait cannot see it)
            ensure_embedded_server(stop=lambda: self.stop_requested > 0)
            if self.stop_requested:
                return
        b = self.app.backend
        pause = 0.1
        while True:
            try:
                b.ping()
                break
            except ServerLoading as exc:
                if pause == 0.1:
                    log.warning("waiting to start: %s; retrying with backoff", exc)
                deadline = time.monotonic() + pause
                while time.monotonic() < deadline:
                    if self.stop_requested:
                        return
                    time.sleep(0.05)
                pause = min(pause * 2, 2.0)
        self.app.slots.check()  # a namespace in the other key layout: refused, naming the way out
        info = b.info("server")
        version = info.get("valkey_version") or info.get("redis_version")
        tasks = sorted(self.app.tasks)
        log.info("taskq worker: app %r, namespace %r, server %s (%s %s), queues %s, concurrency %d x %d "
                 "thread(s), %d task(s): %s", self.app.name, self.app.settings.namespace, redact_url(b.url),
                 info.get("server_name", "redis"), version, ",".join(self.config.queues), self.config.concurrency,
                 self.config.threads, len(tasks), ", ".join(tasks) or "(none)")
        policy = b.config_get("maxmemory-policy")
        if policy and policy != "noeviction":
            log.warning("the server's maxmemory-policy is %r: it may silently DELETE JOBS when memory "
                        "fills up. Set maxmemory-policy noeviction for a job queue.", policy)
        value = b.config_get("hash-max-listpack-value") or b.config_get("hash-max-ziplist-value")
        if value is not None and value.isdigit() and int(value) < 256:
            log.info("hint: the server's hash-max-listpack-value is %s; jobs whose arguments encode to more "
                     "bytes take about 2.5x the memory. Consider hash-max-listpack-value 1024.", value)
        self.app.check_settings()

    def spawn(self, index: int) -> Child:
        tag = secrets.token_hex(3)
        n = self.config.threads
        wids = [f"{self.host}:{os.getpid()}:{index}{f'.{t}' if n > 1 else ''}:{tag}" for t in range(n)]
        slots = [Slot() for _ in wids]
        proc = _ctx.Process(target=child_main, args=(self.app, self.config, wids, slots, self.log_setup),
                            name=f"taskq-child-{index}", daemon=False)
        # The child starts with SIGTERM blocked and unblocks it once its own
        # handler is in place: one sent in between waits instead of reaching
        # the supervisor's handler inherited through fork (and being lost).
        mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM})
        try:
            proc.start()
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        child = Child(index, wids, proc, slots)
        self.children[index] = child
        log.debug("started child %d (pid %d) as %s", index, proc.pid, ", ".join(wids))
        return child

    # ---------------------------------------------------------------- reaping

    def reap_child(self, child: Child, kind: str) -> bool:
        """Return the jobs of a child that is gone (``kind``: lost | timeout | shutdown).

        Each consumer thread's jobs are returned under its own worker id. The
        jobs a child's other threads ran when it was killed on purpose (a hard
        timeout, a forced cancel) go back with their attempt refunded: they
        did nothing wrong. Returns False if the server cannot be reached; the
        loop tries again (meanwhile hard timeouts and restarts of other
        children go on).
        """
        killed_self = any(slot.killed_self for slot in child.slots)
        threaded = len(child.slots) > 1
        try:
            for i, (wid, slot) in enumerate(zip(child.worker_ids, child.slots)):
                own = kind
                if kind == "timeout" and i == child.timed_out_slot:
                    pass
                elif killed_self or kind == "timeout" or (threaded and not slot.job_id):
                    # killed on purpose, or a thread between jobs when another's
                    # job crashed the process: its jobs did nothing wrong
                    own = "shutdown"
                self._reap_consumer(child, wid, child.timed_out if own == "timeout" else slot.job_id, own)
        except TaskQError as exc:
            if (child.index, child.worker_id) not in {(c.index, c.worker_id) for c, _ in self.unreaped}:
                log.warning("cannot return the jobs of child %d yet (%s); will retry", child.index, exc)
                self.unreaped.append((child, kind))
            return False
        return True

    def _reap_consumer(self, child: Child, worker_id: str, running: str, kind: str) -> None:
        blob, delay_ms = b"", 0
        if kind == "timeout":
            opts, attempt = self._options_of(running)
            blob = error_entry(None, 0, kind="timeout", exc_type="TaskTimeout",
                               message=f"killed: still running {opts.timeout_grace:g}s after its timeout of "
                                       f"{opts.timeout or 0:g}s")
            # -1: do not retry (retry_on / dont_retry_on exclude timeouts)
            retry = opts.should_retry(TaskTimeout())
            delay_ms = int(opts.retry_delay(attempt, random.random()) * 1000) if retry else -1
        elif running:
            blob = error_entry(None, 0, kind="lost", exc_type="WorkerLost",
                               message=f"worker lost: its process exited with code {child.process.exitcode}")
        lost = error_entry(None, 0, kind="lost", exc_type="WorkerLost", message="worker lost (its process died)")
        result: dict[str, str] = {}
        for b, _ in self.app.slots.groups(list(self.config.queues)):
            result.update(b.reap_worker(
                worker_id, expected_hb=None, caps=self.reap_caps, lost_blob=lost,
                running=running, running_kind=kind, running_blob=blob, running_due_ms=delay_ms,
            ) or {})
        if result:
            log.warning("child %d: %s", child.index, ", ".join(f"job {j} {o}" for j, o in result.items()))

    def retry_unreaped(self) -> None:
        pending, self.unreaped = self.unreaped, []
        for child, kind in pending:
            if self.reap_child(child, kind):
                log.info("returned the jobs of child %d", child.index)

    def _options_of(self, job_id: str) -> tuple[TaskOptions, int]:
        """Effective options (with per-call overrides) and attempt of a job."""
        rec = self.app.slots.of(job_id).job_record(job_id) if job_id else None
        if rec is None or not rec.task:
            return self.app.settings.default_options, (rec.attempts or 1) if rec else 1
        try:
            opts = self.app.job_options(rec.task, rec.options)
        except (ValueError, TaskQError):  # garbled overrides: the task's own options
            opts = self.app.options_for(rec.task)
        return opts, rec.attempts or 1

    # ---------------------------------------------------------------- loop

    def check_children(self) -> None:
        now = time.monotonic()
        for child in list(self.children.values()):
            proc = child.process
            if proc.exitcode is not None:
                proc.join()
                kind = "timeout" if child.timed_out else "lost"
                if self.stop_requested and kind == "lost":
                    kind = "shutdown"
                clean = proc.exitcode == 0 and all(slot.handed_back for slot in child.slots)
                if proc.exitcode != 0 and not child.timed_out:
                    log.error("child %d (pid %d) died: %s", child.index, proc.pid, _describe(proc.exitcode))
                elif not clean and not child.timed_out:
                    # os._exit(0) in a task, say: its jobs return now, not after heartbeat_timeout
                    log.error("child %d (pid %d) exited with code 0 without handing its jobs back",
                              child.index, proc.pid)
                if not clean:
                    self.reap_child(child, kind)
                del self.children[child.index]
                if not self.stop_requested:
                    self.spawn(child.index)
                continue
            for i, slot in enumerate(child.slots):
                job_id = slot.job_id
                deadline = slot.deadline
                if deadline > 0 and now > deadline and not child.timed_out and slot.job_id == job_id:
                    child.timed_out, child.timed_out_slot = job_id, i
                    others = (f"; the jobs of its {len(child.slots) - 1} other threads go back to their queue"
                              if len(child.slots) > 1 else "")
                    log.error("job %s over its hard timeout: killing child %d (pid %d)%s", child.timed_out,
                              child.index, proc.pid, others)
                    os.kill(proc.pid, signal.SIGKILL)

    def wait(self, timeout: float) -> None:
        sentinels = [c.process.sentinel for c in self.children.values()]
        if sentinels:
            multiprocessing.connection.wait(sentinels, timeout=timeout)
        else:
            time.sleep(timeout)

    def run(self) -> int:
        """Serve until SIGTERM/SIGINT; returns the exit code."""
        self.install_signals()
        self.preflight()
        if self.stop_requested:  # while waiting for the server
            log.info("worker stopped")
            return 0
        if self.config.scheduler:
            self.scheduler = make_scheduler(self.app)
            self._scheduler_thread = threading.Thread(target=self.scheduler.run, name="taskq-scheduler", daemon=True)
            self._scheduler_thread.start()
        for i in range(self.config.concurrency):
            self.spawn(i)
        while not self.stop_requested:
            self.check_children()
            if self.unreaped:
                self.retry_unreaped()
            self.wait(0.1)
        return self.shutdown()

    def shutdown(self) -> int:
        if self.scheduler is not None:
            self.scheduler.stop_periodics()  # no tick is enqueued from here on
        log.info("shutting down: waiting up to %gs for running jobs", self.config.shutdown_timeout)
        for child in self.children.values():
            if child.process.exitcode is None:
                os.kill(child.process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self.config.shutdown_timeout
        while self.children:
            self.check_children()
            if not self.children:
                break
            if self.stop_requested >= 2 or time.monotonic() > deadline:
                why = "second signal" if self.stop_requested >= 2 else "shutdown timeout"
                log.warning("%s: stopping %d children now; their jobs go back to the queue", why, len(self.children))
                for child in self.children.values():
                    if child.process.exitcode is None:
                        child.process.kill()
                for child in list(self.children.values()):
                    child.process.join()
                    self.reap_child(child, "shutdown")
                self.children.clear()
                break
            self.wait(0.1)
        give_up = time.monotonic() + 10
        while self.unreaped and time.monotonic() < give_up:
            self.retry_unreaped()
            if self.unreaped:
                time.sleep(0.2)
        for child, _ in self.unreaped:
            log.error("could not return the jobs of %s; a reaper will after heartbeat_timeout", child.worker_id)
        if self.scheduler is not None:
            self.scheduler.stop()
            assert self._scheduler_thread is not None
            self._scheduler_thread.join(timeout=6)
        log.info("worker stopped")
        return 0


def _describe(code: int | None) -> str:
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"
