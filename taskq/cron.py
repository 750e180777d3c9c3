"""Schedules of periodic tasks (croniter syntax, or a fixed interval).

Cron strings have croniter's field order::

    minute hour day-of-month month day-of-week [second [year]]

The seconds field is the SIXTH, not the first: ``"* * * * * */10"`` is every
10 seconds. A six-field string that reads as seconds-first by mistake
(``"*/10 * * * * *"``: every second of minutes :00, :10, ...) is refused.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from croniter import CroniterBadDateError, croniter

from .errors import ConfigurationError
from .options import MAX_DELAY, seconds

CATCH_UP = ("one", "skip", "all")
MAX_CATCH_UP = 1000  # ticks enqueued at most in one pass with catch_up="all"
SKIP_GRACE_MS = 1000  # with catch_up="skip", a tick at most this late is current, not missed


@dataclass(frozen=True)
class Periodic:
    """When a periodic task runs. Times are epoch milliseconds (server clock)."""

    cron: str | None
    every_ms: int | None
    tz: dt.tzinfo
    catch_up: str
    name: str = ""
    args: tuple[Any, ...] = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def build(cls, *, cron: str | None, every: float | dt.timedelta | None,
              tz: str | dt.tzinfo | None, catch_up: str) -> Periodic:
        if (cron is None) == (every is None):
            raise ConfigurationError("periodic needs exactly one of a cron expression or every=")
        if catch_up not in CATCH_UP:
            raise ConfigurationError(f"catch_up must be one of {CATCH_UP}, not {catch_up!r}")
        if tz is not None and not isinstance(tz, (str, dt.tzinfo)):
            raise ConfigurationError(f"tz must be a time zone name or a tzinfo, not {tz!r}")
        if isinstance(tz, str):
            try:
                tz = zoneinfo.ZoneInfo(tz)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
                raise ConfigurationError(f"unknown time zone {tz!r}: {exc}") from None
        zone = tz or dt.UTC
        every_ms = None
        if cron is not None:
            if not isinstance(cron, str):
                raise ConfigurationError(f"cron expression must be a string, not {cron!r}")
            _check_field_order(cron)
            try:
                croniter(cron, dt.datetime.now(zone)).get_next(dt.datetime)
            except CroniterBadDateError:  # valid syntax, no date ever matches ("0 0 31 2 *")
                raise ConfigurationError(f"cron expression {cron!r} never fires: no date matches it") from None
            except (ValueError, KeyError, TypeError) as exc:
                raise ConfigurationError(f"bad cron expression {cron!r}: {exc}") from None
        else:
            every_ms = int(round(seconds("every", every, maximum=MAX_DELAY) * 1000))  # type: ignore[operator]
            if every_ms < 1000:
                raise ConfigurationError("every= must be at least 1 second")
        return cls(cron=cron, every_ms=every_ms, tz=zone, catch_up=catch_up)

    def bind(self, name: str, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Periodic:
        return replace(self, name=name, args=args, kwargs=kwargs)

    @property
    def description(self) -> str:
        return self.cron if self.cron else f"every {(self.every_ms or 0) / 1000:g}s"

    def next_after(self, ms: int) -> int | None:
        """The first tick strictly after ``ms``; None after the last one (a
        cron string with a year field ends)."""
        if self.every_ms:
            return (ms // self.every_ms + 1) * self.every_ms
        start = dt.datetime.fromtimestamp(ms / 1000, self.tz)
        while True:
            try:
                nxt = croniter(self.cron, start).get_next(dt.datetime)
            except CroniterBadDateError:  # no date left
                return None
            t = int(nxt.timestamp() * 1000)
            if not self._repeated_wall_time(t):
                return t
            start = dt.datetime.fromtimestamp(t / 1000, self.tz)

    def _repeated_wall_time(self, ms: int) -> bool:
        """A tick at a local time seen a second time (the hour repeated when
        daylight saving time ends) of a schedule with fixed hours: it already
        fired at the first one. Schedules that run every hour (hour field
        ``*``) keep both, as real hours went by."""
        local = dt.datetime.fromtimestamp(ms / 1000, self.tz)
        if not local.fold or local.replace(fold=0).utcoffset() == local.utcoffset():
            return False
        return bool(croniter(self.cron).expanded[1] != ["*"])

    def next_ticks(self, ms: int, n: int = 3) -> list[int]:
        """The next ``n`` ticks after ``ms`` (fewer once the schedule ends)."""
        ticks: list[int] = []
        t = self.next_after(ms)
        while t is not None and len(ticks) < n:
            ticks.append(t)
            t = self.next_after(t)
        return ticks

    def latest_tick(self, last_ms: int, now_ms: int) -> int | None:
        """The last tick in (last_ms, now_ms], or None. Found near ``now_ms``
        (a window widened until it holds a tick), never by walking every
        tick since ``last_ms``: a scheduler back after a long outage of a
        frequent schedule finds it at once."""
        if self.every_ms:
            t = now_ms // self.every_ms * self.every_ms
            return t if t > last_ms else None
        span = 1000
        while True:
            lo = max(last_ms, now_ms - span)
            first = self.next_after(lo)
            if first is not None and first <= now_ms:
                t = first
                while True:
                    nxt = self.next_after(t)
                    if nxt is None or nxt > now_ms:
                        return t
                    t = nxt
            if lo == last_ms:
                return None
            span *= 8

    def due_ticks(self, last_ms: int, now_ms: int) -> list[int]:
        """Ticks in (last_ms, now_ms] to enqueue, per the catch-up policy:
        with ``"all"`` the oldest ``MAX_CATCH_UP`` (the next pass goes on
        from there), otherwise at most the latest one."""
        if self.catch_up == "all":
            ticks: list[int] = []
            t = self.next_after(last_ms)
            while t is not None and t <= now_ms and len(ticks) < MAX_CATCH_UP:
                ticks.append(t)
                t = self.next_after(t)
            return ticks
        latest = self.latest_tick(last_ms, now_ms)
        if latest is None:
            return []
        if self.catch_up == "skip":  # only a current tick runs, even if a single one was missed
            return [latest] if now_ms - latest < SKIP_GRACE_MS else []
        return [latest]


def _check_field_order(cron: str) -> None:
    """Refuse a six-field string that every-second-ly fires in some minutes
    only: it was written seconds-first, where croniter reads seconds last."""
    fields = cron.split()
    if len(fields) == 6 and fields[5] == "*" and any(f != "*" for f in fields[:5]):
        raise ConfigurationError(
            f"cron expression {cron!r} would fire every second while its other fields match: taskq reads six "
            "fields as 'minute hour day month weekday second' (the seconds field is the last, croniter's "
            f"order). For seconds first, move it last: {' '.join([*fields[1:], fields[0]])!r}"
        )
