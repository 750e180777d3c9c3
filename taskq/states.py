"""The states a job goes through."""

from __future__ import annotations

import enum


class JobState(enum.StrEnum):
    SCHEDULED = "scheduled"  # waits in the schedule for its due time
    QUEUED = "queued"  # in its ready list
    WAITING = "waiting"  # waits for a resource held by another job, for its dependencies, or held back by a flow limit
    ACTIVE = "active"  # leased by a worker
    STALLED = "stalled"  # held back by an operator
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"  # its resource was busy (on_locked="skip")
    EXPIRED = "expired"  # not started by its expiry (expires=...): never ran

    @property
    def finished(self) -> bool:
        return self in FINISHED

    def __str__(self) -> str:
        return self.value


FINISHED = frozenset({JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED, JobState.SKIPPED,
                      JobState.EXPIRED})
