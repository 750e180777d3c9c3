"""Checks of the values of task options and app settings: priorities,
durations, rates, counts, expiry times and shard maps, each normalized to
what the rest of taskq uses (public API units are float seconds)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

PRIORITY_NAMES = {"high": 10, "normal": 0, "low": -10}
PRIORITY_RANGE = (-100, 100)


def parse_priority(value: int | str) -> int:
    """``"high"``/``"normal"``/``"low"`` or an int in -100..100 (higher runs first)."""
    if isinstance(value, str):
        if value in PRIORITY_NAMES:
            return PRIORITY_NAMES[value]
        try:
            value = int(value)
        except ValueError:
            raise ConfigurationError(
                f"priority must be one of {sorted(PRIORITY_NAMES)} or an integer, not {value!r}"
            ) from None
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigurationError(f"priority must be an int or a level name, not {value!r}")
    lo, hi = PRIORITY_RANGE
    if not lo <= value <= hi:
        raise ConfigurationError(f"priority must be within {lo}..{hi}, not {value}")
    return value


# The longest delay: timedelta.max (about 2.7 million years). Due times are
# integer milliseconds on the server, where a longer one wraps around.
MAX_DELAY = dt.timedelta.max.total_seconds()


def seconds(name: str, value: Any, *, allow_none: bool = False, minimum: float = 0.0,
            maximum: float | None = None) -> float | None:
    """Validate a duration given as seconds (int/float) or a timedelta."""
    if value is None and allow_none:
        return None
    if isinstance(value, dt.timedelta):
        value = value.total_seconds()
    if isinstance(value, str):
        try:
            value = float(value)
        except ValueError:
            raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}") from None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be >= {minimum:g}, not {value!r}")
    if maximum is not None and not value <= maximum:
        raise ConfigurationError(f"{name} must be at most {maximum:g} seconds, not {value!r}")
    return float(value)


RATE_UNITS = {"s": 1.0, "m": 60.0, "h": 3600.0}


def parse_rate(value: Any) -> tuple[int, float] | None:
    """``"100/s"``, ``"10/m"``, ``"1000/h"`` or ``(count, seconds)``: at most
    ``count`` starts per ``seconds`` (None: no limit)."""
    if value is None:
        return None
    count: Any
    per: Any
    if isinstance(value, str):
        head, sep, unit = value.replace(" ", "").partition("/")
        if not sep or unit not in RATE_UNITS or not head.isdigit():
            raise ConfigurationError(f"rate_limit must look like '100/s', '10/m' or '1000/h' (or be a "
                                     f"(count, seconds) pair), not {value!r}")
        count, per = int(head), RATE_UNITS[unit]
    elif isinstance(value, (tuple, list)) and len(value) == 2:
        count, per = value
        per = seconds("rate_limit period", per)
    else:
        raise ConfigurationError(f"rate_limit must be a string like '100/s' or a (count, seconds) pair, not {value!r}")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ConfigurationError(f"rate_limit's count must be an int >= 1, not {count!r}")
    if not per or per * 1000 < 1:
        raise ConfigurationError(f"rate_limit's period must be at least 1 ms, not {per!r}")
    return count, float(per)


def positive_int(name: str, value: Any, allow_none: bool = True) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"{name} must be an int >= 1{' or None' if allow_none else ''}, not {value!r}")
    return value


def check_expires(value: Any) -> float | dt.datetime | None:
    """``expires``: seconds from the enqueue, a timedelta, or an aware datetime."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise ConfigurationError("expires must be a timezone-aware datetime (or seconds, or a timedelta)")
        return value
    return seconds("expires", value, allow_none=True, maximum=MAX_DELAY)


MAX_SHARDS = 256


def parse_shards(value: Any, layout: str) -> dict[str, int]:
    """``queue_shards`` as a dict (from a mapping or ``"emails=4,b=2"``), checked."""
    if isinstance(value, str):
        try:
            value = {q.strip(): int(n) for q, _, n in (p.partition("=") for p in value.split(",") if p.strip())}
        except ValueError:
            raise ConfigurationError(f"queue_shards must read like 'emails=4,reports=2', not {value!r}") from None
    if not isinstance(value, Mapping):
        raise ConfigurationError(f"queue_shards must map queue names to shard counts, not {value!r}")
    out = {}
    for queue, n in value.items():
        if not isinstance(queue, str) or not queue or any(c in queue for c in " :{}#"):
            raise ConfigurationError(f"queue_shards: {queue!r} is not a queue name (no spaces, ':', '#' or braces)")
        if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= MAX_SHARDS:
            raise ConfigurationError(f"queue_shards[{queue!r}] must be an int from 1 to {MAX_SHARDS}, not {n!r}")
        if n > 1:
            out[queue] = n
    if out and layout != "queue":
        raise ConfigurationError("queue_shards needs key_layout='queue': a shard is a slot of its own")
    return out
