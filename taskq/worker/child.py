"""The consumer loop of one worker child process.

Claims jobs in batches (leased as a whole), runs them one at a time, and
settles their outcomes together with the next claim in one round trip
(``batches.py``).
A child started with ``threads`` > 1 runs that many consumers, one per
thread, each with a worker id, leases and heartbeat of its own.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import threading
import time
from typing import TYPE_CHECKING

from ..errors import BrokerUnavailable, TaskQError
from ..storage.records import ClaimedJob
from ..waits import retry_pause_cap
from . import aio
from .batches import Batches
from .config import WorkerConfig
from .executor import Executor
from .heartbeat import Heartbeat, kill_self, watch_gap_ms
from .outcome import Outcome, log_outcome
from .shared import Slot

if TYPE_CHECKING:
    from ..app import TaskQ

log = logging.getLogger("taskq.worker")


class Consumer(Batches):
    def __init__(self, app: TaskQ, config: WorkerConfig, worker_id: str, slot: Slot | None = None,
                 stopping: threading.Event | None = None) -> None:
        super().__init__(app, config, worker_id, stopping or threading.Event())  # shared by a child's consumers
        self.slot = slot
        s = app.settings
        self.reap_caps = (s.failed_max, s.error_history, int(s.failed_ttl * 1000))
        self.flusher_stop = threading.Event()
        self.cancels: dict[str, int] = {}
        self.parent_pid = os.getppid()  # the supervisor; if it dies, this process stops too
        # task -> whether every run of it so far took at most flush_interval:
        # the outcomes waiting for a batch are sent before any other task starts
        self.quick: dict[str, bool] = {}
        self.executor = Executor(app, self.backend, self._on_start)
        self.running: ClaimedJob | None = None
        self._lock = threading.Lock()  # guards settle calls (main thread vs forced cancel)
        hb_timeout = s.heartbeat_timeout
        self.heartbeat = Heartbeat(
            [b for b, _ in self.groups], worker_id, interval=min(hb_timeout / 5, 2.0), info_ttl_ms=int(hb_timeout * 3000),
            info={"host": socket.gethostname(), "pid": str(os.getpid()), "ppid": str(os.getppid()),
                  "queues": ",".join(config.queues), "concurrency": "1", "started": str(time.time())},
            on_cancel=self._on_cancel, watch_gap_ms=watch_gap_ms(hb_timeout),
        )

    # ---------------------------------------------------------------- signals

    def install_signals(self) -> None:
        """SIGTERM: finish the running job, hand back the rest, exit. SIGINT is
        the supervisor's to handle (a terminal sends it to the whole group)."""
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, signal.SIG_IGN)

    # ---------------------------------------------------------------- callbacks

    def _on_start(self, job: ClaimedJob, hard_deadline: float) -> None:
        self.running = job if hard_deadline >= 0 else None
        if self.slot is not None:
            self.slot.set(job.id if hard_deadline >= 0 else "", hard_deadline if hard_deadline > 0 else 0.0)

    def _on_cancel(self, cancels: dict[str, int]) -> None:
        # kept only for prefetched jobs, read when one starts; a request for the
        # running job goes to its context (kept, it would cancel a later run of
        # the same id: one requeued, which withdraws the request)
        held = {j.id for j in list(self.held)}
        self.cancels.update({i: level for i, level in cancels.items() if i in held})
        ctx = self.executor.current
        if ctx is None or ctx.id not in cancels:
            return
        ctx.cancel_level = cancels[ctx.id]
        running = self.running
        if ctx.cancel_level >= 2 and running is not None and running.id == ctx.id:
            log.warning("job %s force-cancelled: killing this worker process", ctx.id)
            out = Outcome(running.id, running.token, "cancel",
                          ttl_ms=int(self.app.settings.succeeded_ttl * 1000), task=running.task)
            with self._lock:
                # the outcomes still waiting for their batch go too: the kill
                # would lose them, and their jobs would run again; the hooks
                # deferred by the flusher run first, or never
                deferred, self.deferred = self.deferred, []
                for done in deferred:
                    self.executor.after_recorded(done)
                outs, self.pending = self.pending, []
                try:
                    self._settle([*outs, out], 0)
                except TaskQError:
                    self.pending[:0] = outs  # not sent: this process goes on, and sends them
                    raise
            if self.slot is not None:
                self.slot.mark_killed_self()  # the jobs of sibling threads go back, attempt refunded
            kill_self()

    # ---------------------------------------------------------------- loop

    def step(self) -> None:
        """One iteration: run a held job, or settle and claim more."""
        if self.held and not self.stopping.is_set():
            if self.pending and not self.quick.get(self.held[0].task):
                # a run that may be long: the finished jobs' outcomes go first, or
                # they would show as active (results late, resource locks and
                # unique keys held) for all of it, and run again after a crash
                with self._lock:
                    outs, self.pending = self.pending, []
                    self._settle_or_keep(outs, 0)
            job = self.held.popleft()
            out = self.executor.run(job, self.cancels.pop(job.id, 0))
            self.cancels.pop(job.id, None)  # one the heartbeat added as the job left `held`
            self.avg_run = out.duration_ms / 1000 if not self.avg_run else 0.8 * self.avg_run + 0.2 * out.duration_ms / 1000
            log_outcome(job, out)
            if out.duration_ms / 1000 > self.config.flush_interval:
                self.quick[job.task] = False
            else:
                self.quick.setdefault(job.task, True)
            with self._lock:  # the flusher may be sending what is pending
                if not self.pending:
                    self.pending_since = time.monotonic()
                self.pending.append(out)
                if self.deferred:
                    # hooks of outcomes the flusher sent run below, and may take
                    # long, with no flusher: this outcome is sent before them
                    # (its hooks after theirs, in job order)
                    outs, self.pending = self.pending, []
                    try:
                        self._settle(outs, 0, hooks_now=False)
                    except TaskQError:
                        self.pending[:0] = outs  # sent with the next settle
                deferred, self.deferred = self.deferred, []
            for done in deferred:
                self.executor.after_recorded(done)
            # A job slower than the batch budget: the jobs prefetched behind it go
            # back to the head of the queue, so idle workers are not starved.
            slow = out.duration_ms / 1000 > self.config.batch_budget
            if self.held and not slow and (not self.pending  # sent above, before the deferred hooks
                                           or time.monotonic() - self.pending_since < self.config.flush_interval):
                return
            with self._lock:
                outs, self.pending = self.pending, []
                if slow and self.held:
                    outs += [Outcome(j.id, j.token, "release") for j in self.held]
                    for j in self.held:
                        self.cancels.pop(j.id, None)
                    self.held.clear()
                self.held.extend(self._refill(outs) if not self.held else self._settle_or_keep(outs, 0))
            return
        with self._lock:
            outs, self.pending = self.pending, []
            self.held.extend(self._refill(outs, block=not outs))

    def _flush_loop(self) -> None:
        """Keep the promise of ``flush_interval`` while a job runs: a job of a
        task that has always been quick runs with the outcomes before it still
        waiting for their batch; if it turns out slow (a hung call), they are
        sent from this thread instead of waiting for it (results late, locks
        and unique keys held, and run again if a hard timeout kills the
        process). Their hooks run on the consumer's thread when the job
        returns; a process killed before that loses them, the jobs stay done."""
        interval = self.config.flush_interval
        tick = min(max(interval, 0.02), 0.1)
        while not self.flusher_stop.wait(tick):
            if self.running is None or not self.pending or time.monotonic() - self.pending_since < interval:
                continue
            with self._lock:
                if self.running is None or not self.pending:
                    continue  # the job returned meanwhile: the consumer sends them
                outs, self.pending = self.pending, []
                try:
                    self._settle(outs, 0, hooks_now=False)
                except TaskQError as exc:
                    self.pending[:0] = outs  # the consumer sends them when the job returns
                    log.debug("could not send outcomes while a job runs: %s", exc)
                except Exception:
                    self.pending[:0] = outs
                    log.exception("outcome flusher error")

    def register(self) -> None:
        """Register the tasks and this process; while the server is unreachable
        (a process started during a restart) retry with backoff."""
        pause = 0.1
        while True:
            try:
                for b, queues in self.groups:
                    for queue in queues:
                        self.app.slots.register(queue)
                    b.register_tasks({n: self.app.options_for(n).limits for n in self.app.tasks})
                self.heartbeat.beat()
                return
            except BrokerUnavailable as exc:
                if self.stopping.is_set():
                    return
                if pause == 0.1:
                    log.warning("cannot reach the server to start (%s); retrying with backoff", exc)
                time.sleep(pause)
                pause = min(pause * 2, retry_pause_cap(self.app))

    def run(self) -> None:
        """Serve until asked to stop; then hand back unstarted jobs and leave."""
        self.register()
        self.heartbeat.start()
        threading.Thread(target=self._flush_loop, name="taskq-flusher", daemon=True).start()
        pause = 0.1
        down = False
        while not self.stopping.is_set() or self.pending:
            if not self.stopping.is_set() and os.getppid() != self.parent_pid:
                log.error("the supervisor (pid %d) is gone: no one enforces hard timeouts or replaces this "
                          "process; handing back held jobs and exiting", self.parent_pid)
                self.stopping.set()
            try:
                if self.stopping.is_set():
                    with self._lock:
                        outs, self.pending = self.pending, []
                        self._settle_or_keep(outs, 0)  # a failed send is retried, never dropped
                    continue
                self.step()
                if down:
                    log.warning("connection to the server restored")
                    known = [j.id for j in self.held] + [o.id for o in self.pending]
                    for b, _ in self.groups:
                        b.release_orphans(self.worker_id, known)
                down, pause = False, 0.1
            except TaskQError as exc:
                if not down:
                    log.warning("lost the server (%s); retrying with backoff", exc)
                down = True
                time.sleep(pause)
                pause = min(pause * 2, retry_pause_cap(self.app))
        self.shutdown()

    def shutdown(self) -> None:
        """Give back prefetched jobs (no attempt counted) and unregister."""
        aio.close()
        self.flusher_stop.set()
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                released = [Outcome(j.id, j.token, "release") for j in self.held]
                with self._lock:
                    self._settle(released, 0)
                self.held.clear()
                self.heartbeat.stop()
                for b, _ in self.groups:
                    b.reap_worker(self.worker_id, expected_hb=None, caps=self.reap_caps,
                                  lost_blob=b"", running_kind="shutdown")
                if self.slot is not None:
                    self.slot.mark_handed_back()
                return
            except TaskQError as exc:
                log.warning("could not hand back jobs yet (%s); retrying", exc)
                time.sleep(0.2)
        log.error("gave up handing back %d jobs; reapers will return them", len(self.held))
