"""A consumer's batches: the outcomes of finished jobs are settled together
with the next claim in one round trip, and with several storages to claim
from (each queue's slot, ``queue`` key layout) the claims take them in turn.
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import TYPE_CHECKING

from ..errors import TaskQError
from ..storage.records import ClaimedJob
from .config import WorkerConfig
from .executor import Executor
from .outbox import deliver_now
from .outcome import Outcome

if TYPE_CHECKING:
    from ..app import TaskQ
    from ..storage.backend import Backend

log = logging.getLogger("taskq.worker")
ROTATE_EVERY = 8  # batches claimed from one queue's slot in a row before the others are asked
IDLE_SLICE = 0.1  # seconds asleep on one slot's wake-ups while several are served


class Batches:
    """The jobs one consumer holds, the outcomes it has yet to send, and the
    storages it claims from (its ``executor`` is set by the subclass)."""

    executor: Executor

    def __init__(self, app: TaskQ, config: WorkerConfig, worker_id: str, stopping: threading.Event) -> None:
        self.app = app
        self.config = config
        self.worker_id = worker_id
        self.stopping = stopping
        # the storages it claims from with their queues: one, or each queue's
        # slot (``queue`` key layout), taken in turn (see _refill)
        self.groups = app.slots.groups(list(config.queues))
        self.at = 0
        self.streak = 0  # batches claimed from groups[at] in a row
        self.block_timeout = config.block_timeout if len(self.groups) == 1 else min(config.block_timeout, IDLE_SLICE)
        s = app.settings
        self.caps = (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))
        self.held: collections.deque[ClaimedJob] = collections.deque()
        self.pending: list[Outcome] = []
        self.pending_since = 0.0
        # outcomes the flusher sent while a job ran: their hooks run on this
        # consumer's thread once that job returns (see Consumer._flush_loop)
        self.deferred: list[Outcome] = []
        self.avg_run = 0.0  # EWMA of run time (s), sizes the next claim

    @property
    def backend(self) -> Backend:
        """The storage of the group it claims from now."""
        return self.groups[self.at][0]

    def _switch(self, at: int) -> None:
        """Claim from ``groups[at]`` (only with nothing held or pending)."""
        self.at = at
        self.executor.backend = self.backend

    def batch_size(self) -> int:
        if self.stopping.is_set():
            return 0
        if self.avg_run <= 0:
            return 1
        return max(1, min(self.config.prefetch, int(self.config.batch_budget / self.avg_run)))

    def _settle(self, outcomes: list[Outcome], count: int, block: bool = False,
                hooks_now: bool = True) -> list[ClaimedJob]:
        b = self.backend
        if block and not outcomes:
            _, rows = b.block_then_claim(self.worker_id, count, self.groups[self.at][1], self.config.tasks,
                                         self.caps, self.block_timeout)
            settled: list[int] = []
        else:
            settled, rows = b.settle_claim(self.worker_id, count, [o.fields() for o in outcomes],
                                           self.groups[self.at][1], self.config.tasks, self.caps)
            if b.outbox_written:  # a workflow's next job waits in another slot: released now
                deliver_now(self.app, b)
        for out, ok in zip(outcomes, settled):
            if ok and hooks_now:
                self.executor.after_recorded(out)
            elif ok:
                self.deferred.append(out)
            else:
                log.warning("outcome %s of job %s discarded: this worker no longer holds its lease "
                            "(the job was reclaimed, requeued or cancelled)", out.kind, out.id)
        return [ClaimedJob(r) for r in rows]

    def _settle_or_keep(self, outcomes: list[Outcome], count: int, block: bool = False) -> list[ClaimedJob]:
        """``_settle``; if the call fails the outcomes stay pending and are sent
        again (a repeat of one the server did record is discarded by fencing)."""
        try:
            return self._settle(outcomes, count, block)
        except TaskQError:
            self.pending[:0] = outcomes
            raise

    def _refill(self, outs: list[Outcome], block: bool = False) -> list[ClaimedJob]:
        """Settle ``outs`` and claim the next batch. With several groups (the
        ``queue`` key layout) it claims where it claimed last, with the
        settle, for up to ROTATE_EVERY batches in a row; then, or when that
        group is empty, it asks the others in turn (in the queues' order
        from the next one), and when none has work it sleeps on one of them
        for at most IDLE_SLICE."""
        count = self.batch_size()
        if len(self.groups) == 1:
            return self._settle_or_keep(outs, count, block=block)
        self.streak += 1
        if self.streak < ROTATE_EVERY or count == 0:
            got = self._settle_or_keep(outs, count)
            if got or count == 0:
                return got
        elif outs:
            self._settle_or_keep(outs, 0)
        self.streak = 0
        for _ in range(len(self.groups)):
            self._switch((self.at + 1) % len(self.groups))
            got = self._settle_or_keep([], count)
            if got:
                return got
        return self._settle_or_keep([], count, block=True) if block else []
