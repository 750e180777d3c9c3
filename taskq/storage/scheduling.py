"""The scheduler's calls: promote due jobs, periodic ticks, trim the
finished indexes."""

from __future__ import annotations

from collections.abc import Sequence

from .connection import Arg, Connection, translate_errors


class Scheduling(Connection):
    """Due jobs, cron ticks and retention."""


    def promote(self, limit: int = 2000, now_ms: Arg = "") -> tuple[int, int, int]:
        moved, due, now = self.run("promote", now_ms, limit)
        return int(moved), int(due), int(now)

    def wait_schedule_change(self, timeout: float) -> None:
        """Sleep until a job due earlier than the current first one arrives, or timeout."""
        with translate_errors(self.url):
            self.client.execute_command("BLPOP", self.keys.schedule_wake, max(timeout, 0.001))

    def cron_last(self, name: str) -> int | None:
        with translate_errors(self.url):
            raw = self.client.hget(self.keys.cron, name)
        return int(raw) if raw is not None else None

    def cron_init(self, name: str, tick_ms: int) -> int:
        with translate_errors(self.url):
            self.client.hsetnx(self.keys.cron, name, tick_ms)
            return int(self.client.hget(self.keys.cron, name))

    def fire_periodic(self, name: str, tick_ms: int, job: Sequence[Arg], *, enqueue: bool = True,
                      now_ms: Arg = "") -> bool:
        fired, _ = self.run("fire_periodic", now_ms, name, tick_ms, *job, "1" if enqueue else "0")
        return bool(fired)

    def trim_finished(self, failed_ttl_ms: int, done_ttl_ms: int, limit: int = 1000) -> int:
        return int(self.run("trim_finished", "", failed_ttl_ms, done_ttl_ms, limit))
