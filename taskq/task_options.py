"""``TaskOptions``: the flags of one task, validated, and how a job's
options are merged and its retries decided."""

from __future__ import annotations

import dataclasses
import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, Literal

from .errors import ConfigurationError
from .validation import MAX_DELAY, check_expires, parse_priority, parse_rate, positive_int, seconds

ExcSpec = tuple[type[BaseException] | str, ...]


@dataclass(frozen=True)
class TaskOptions:
    """The flags of one task (see the README's table)."""

    queue: str = "default"
    priority: int = 0
    retry: int = 0
    max_lost: int = 2
    retry_interval: float = 10.0
    retry_backoff: float = 1.0
    retry_max_interval: float = 3600.0
    retry_jitter: float = 0.0
    retry_on: ExcSpec = (Exception,)
    dont_retry_on: ExcSpec = ()
    delay: float = 0.0
    timeout: float | None = None
    timeout_grace: float = 5.0
    tombstone: bool = False
    tombstone_timeout: float = 10.0
    tombstone_ttl: float = 3600.0
    unique: bool = False
    unique_ttl: float | None = None
    resource: str | Callable[..., str] | None = None
    on_locked: Literal["skip", "wait"] = "skip"
    durable: bool = False
    rate_limit: str | tuple[int, float] | None = None  # normalized to (count, seconds)
    rate_burst: int | None = None  # starts allowed at once; None: the rate's count
    rate_limit_key: str | Callable[..., str] | None = None
    concurrency: int | None = None
    resource_limit: int = 1
    expires: float | dt.timedelta | dt.datetime | None = None  # normalized to seconds or a datetime
    on_success: Callable[..., Any] | None = None
    on_failure: Callable[..., Any] | None = None

    def __post_init__(self) -> None:
        s = object.__setattr__
        if not isinstance(self.queue, str) or not self.queue or any(c in self.queue for c in " :{}"):
            raise ConfigurationError(f"queue must be a non-empty name without spaces, ':' or braces, not {self.queue!r}")
        s(self, "priority", parse_priority(self.priority))
        if isinstance(self.retry, bool) or not isinstance(self.retry, int) or self.retry < 0:
            raise ConfigurationError(f"retry must be an int >= 0, not {self.retry!r}")
        if isinstance(self.max_lost, bool) or not isinstance(self.max_lost, int) or self.max_lost < 0:
            raise ConfigurationError(f"max_lost must be an int >= 0, not {self.max_lost!r}")
        for name in ("retry_interval", "retry_max_interval", "timeout_grace", "tombstone_timeout", "tombstone_ttl"):
            s(self, name, seconds(name, getattr(self, name)))
        s(self, "delay", seconds("delay", self.delay, maximum=MAX_DELAY))
        for name in ("timeout", "unique_ttl"):
            s(self, name, seconds(name, getattr(self, name), allow_none=True))
        if self.timeout == 0:
            raise ConfigurationError("timeout must be > 0 (or None for no limit)")
        s(self, "retry_backoff", seconds("retry_backoff", self.retry_backoff, minimum=1.0))
        jitter = seconds("retry_jitter", self.retry_jitter)
        if jitter is not None and jitter > 1:
            raise ConfigurationError("retry_jitter is a fraction of the interval, 0..1")
        s(self, "retry_jitter", jitter)
        for name in ("retry_on", "dont_retry_on"):
            value = getattr(self, name)
            if isinstance(value, (type, str)):
                value = (value,)
            value = tuple(value)
            for item in value:
                if not (isinstance(item, str) or (isinstance(item, type) and issubclass(item, BaseException))):
                    raise ConfigurationError(f"{name} takes exception classes or their names, not {item!r}")
            s(self, name, value)
        for name in ("tombstone", "unique", "durable"):
            if not isinstance(getattr(self, name), bool):
                raise ConfigurationError(f"{name} must be True or False, not {getattr(self, name)!r}")
        if self.on_locked not in ("skip", "wait"):
            raise ConfigurationError(f"on_locked must be 'skip' or 'wait', not {self.on_locked!r}")
        if self.resource is not None and not (isinstance(self.resource, str) or callable(self.resource)):
            raise ConfigurationError("resource must be a string or a function of the task's arguments")
        for name in ("on_success", "on_failure"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise ConfigurationError(f"{name} must be callable")
        s(self, "rate_limit", parse_rate(self.rate_limit))
        s(self, "rate_burst", positive_int("rate_burst", self.rate_burst))
        s(self, "concurrency", positive_int("concurrency", self.concurrency))
        s(self, "resource_limit", positive_int("resource_limit", self.resource_limit, allow_none=False))
        if self.rate_limit_key is not None and not (
                (isinstance(self.rate_limit_key, str) and self.rate_limit_key) or callable(self.rate_limit_key)):
            raise ConfigurationError("rate_limit_key must be a non-empty string or a function of the task's arguments")
        s(self, "expires", check_expires(self.expires))

    @property
    def max_attempts(self) -> int:
        return self.retry + 1

    @property
    def limits(self) -> str:
        """``"<max attempts>:<max lost>"``, as workers register them for the scripts."""
        return f"{self.max_attempts}:{self.max_lost}"

    def merged(self, overrides: Mapping[str, Any]) -> TaskOptions:
        """A copy with ``overrides`` applied (validated)."""
        if not overrides:
            return self
        check_flag_names(overrides, "task option")
        return dataclasses.replace(self, **overrides)

    def retry_delay(self, attempt: int, rand: float = 0.5) -> float:
        """Seconds before the attempt after ``attempt`` (1-based), with backoff and jitter."""
        try:
            growth = self.retry_backoff ** max(attempt - 1, 0)
        except OverflowError:  # a float past 1.8e308: long over any cap
            growth = math.inf
        delay = self.retry_interval * growth if self.retry_interval else 0.0
        delay = min(delay, self.retry_max_interval)
        if self.retry_jitter:
            delay *= 1 - self.retry_jitter + 2 * self.retry_jitter * rand
        return min(max(delay, 0.0), MAX_DELAY)

    def should_retry(self, exc: BaseException) -> bool:
        return _matches(exc, self.retry_on) and not _matches(exc, self.dont_retry_on)


TASK_FLAGS = frozenset(f.name for f in fields(TaskOptions))
# Options that may be given per call and stored with the job.
CALL_FLAGS = TASK_FLAGS - {"on_success", "on_failure", "resource"}
# Flags that go with the job to the claim script (docs/flow-control.md).
FLOW_FLAGS = frozenset({"rate_limit", "rate_burst", "rate_limit_key", "concurrency", "resource_limit", "expires"})


def check_flag_names(flags: Mapping[str, Any], what: str) -> None:
    unknown = sorted(set(flags) - TASK_FLAGS)
    if unknown:
        raise ConfigurationError(f"unknown {what} {', '.join(map(repr, unknown))}; known: {', '.join(sorted(TASK_FLAGS))}")


def _matches(exc: BaseException, spec: ExcSpec) -> bool:
    for item in spec:
        if isinstance(item, str):
            names = {c.__name__ for c in type(exc).__mro__} | {
                f"{c.__module__}.{c.__qualname__}" for c in type(exc).__mro__
            }
            if item in names:
                return True
        elif isinstance(exc, item):
            return True
    return False
