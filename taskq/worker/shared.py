"""What a child tells its supervisor without a round trip: per consumer
thread, the job it is running and its hard-timeout deadline, whether the
child killed itself on purpose, and whether the thread handed all its jobs
back before leaving (shared memory, no locks needed: the id is written
before the deadline)."""

from __future__ import annotations

import multiprocessing as mp

ID_BYTES = 1024  # a job id is at most 200 characters: 800 bytes of UTF-8, and its NUL


class Slot:
    def __init__(self) -> None:
        self._id = mp.RawArray("c", ID_BYTES)
        self._deadline = mp.RawValue("d", 0.0)
        self._killed_self = mp.RawValue("b", 0)
        self._handed_back = mp.RawValue("b", 0)

    def set(self, job_id: str, deadline: float) -> None:
        if job_id:
            self._id.value = job_id.encode()[: ID_BYTES - 1]
            self._deadline.value = deadline
        else:  # clearing: the deadline first, so no deadline is ever seen without its job
            self._deadline.value = 0.0
            self._id.value = b""

    @property
    def job_id(self) -> str:
        raw: bytes = self._id.value
        return raw.decode("utf-8", "replace")  # never raise in the supervisor's loop

    @property
    def deadline(self) -> float:
        return float(self._deadline.value)

    @property
    def killed_self(self) -> bool:
        """The child killed itself on purpose (a forced cancel), not crashed."""
        return bool(self._killed_self.value)

    def mark_killed_self(self) -> None:
        self._killed_self.value = 1

    @property
    def handed_back(self) -> bool:
        """The consumer left cleanly: its jobs are back and it is unregistered."""
        return bool(self._handed_back.value)

    def mark_handed_back(self) -> None:
        self._handed_back.value = 1
