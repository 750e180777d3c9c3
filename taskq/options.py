"""Task options and app settings: defaults and validation live here once.

Task options are resolved in this order (first wins)::

    per-call option > settings["task_flags"][name] > decorator > settings["task_defaults"] > built-in default

Public API units are float seconds; :meth:`TaskOptions.ms` gives the
integer milliseconds that go to Redis.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib
import math
import os
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, Literal

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


ExcSpec = tuple[type[BaseException] | str, ...]

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


def _positive_int(name: str, value: Any, allow_none: bool = True) -> int | None:
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
        s(self, "rate_burst", _positive_int("rate_burst", self.rate_burst))
        s(self, "concurrency", _positive_int("concurrency", self.concurrency))
        s(self, "resource_limit", _positive_int("resource_limit", self.resource_limit, allow_none=False))
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


# ---------------------------------------------------------------- app settings

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


@dataclass(frozen=True)
class AppSettings:
    """App-level settings. Each can also come from ``TASKQ_<NAME>`` in the environment."""

    redis_url: str | None = field(default=None, repr=False)  # may hold a password
    namespace: str = "taskq"
    # "namespace" (one hash slot) or "queue" (a slot per queue); None: "queue"
    # on a redis+cluster:// URL, else "namespace" (docs/deployment-scaling.md)
    key_layout: str | None = None
    queue_shards: Mapping[str, int] = field(default_factory=dict)  # queue -> shards (key_layout "queue")
    heartbeat_timeout: float = 10.0
    max_payload_bytes: int = 512 * 1024
    succeeded_ttl: float = 3600.0
    failed_ttl: float = 7 * 86400.0
    failed_max: int = 10_000
    done_max: int = 1_000
    error_history: int = 10
    enqueue_retry_timeout: float = 5.0
    durable: bool = False
    tracing: bool = True  # OpenTelemetry spans, when taskq[otel] is installed and a tracer provider set
    durable_replicas: int | None = None  # None: 1 if the master has a replica, else 0
    durable_timeout: float = 2.0
    secret_key: str | None = field(default=None, repr=False)
    old_secret_keys: tuple[str, ...] = field(default=(), repr=False)
    task_flags: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    task_defaults: Mapping[str, Any] = field(default_factory=dict)
    include: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        s = object.__setattr__
        if not isinstance(self.namespace, str) or not self.namespace or any(c in self.namespace for c in "{}: "):
            raise ConfigurationError(f"namespace must be a non-empty name without braces, ':' or spaces, not "
                                     f"{self.namespace!r} (it defaults to the app's name: pass namespace=...)")
        if self.key_layout in (None, "", "auto"):
            cluster = str(self.redis_url or "").split("://", 1)[0].lower() in ("redis+cluster", "rediss+cluster")
            s(self, "key_layout", "queue" if cluster else "namespace")
        if self.key_layout not in ("namespace", "queue"):
            raise ConfigurationError(f"key_layout must be 'namespace', 'queue' or None (queue on a cluster URL), "
                                     f"not {self.key_layout!r}")
        s(self, "queue_shards", parse_shards(self.queue_shards, self.key_layout))
        for name in ("heartbeat_timeout", "succeeded_ttl", "failed_ttl", "enqueue_retry_timeout", "durable_timeout"):
            s(self, name, seconds(name, getattr(self, name)))
        if self.heartbeat_timeout < 0.5:
            raise ConfigurationError("heartbeat_timeout must be >= 0.5 seconds")
        for name in ("max_payload_bytes", "failed_max", "done_max", "error_history"):
            value = getattr(self, name)
            if isinstance(value, str) and value.isdigit():
                value = int(value)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"{name} must be an int >= 1, not {value!r}")
            s(self, name, value)
        replicas = self.durable_replicas
        if isinstance(replicas, str) and replicas.strip().lower() in ("", "auto"):
            replicas = None
        elif isinstance(replicas, str) and replicas.strip().isdigit():
            replicas = int(replicas)
        if replicas is not None and (isinstance(replicas, bool) or not isinstance(replicas, int) or replicas < 0):
            raise ConfigurationError(f"durable_replicas must be an int >= 0 (or None: 1 if the master has a "
                                     f"replica), not {self.durable_replicas!r}")
        s(self, "durable_replicas", replicas)
        if self.durable_timeout <= 0:
            raise ConfigurationError("durable_timeout must be > 0 seconds")
        for name in ("durable", "tracing"):
            if isinstance(getattr(self, name), str):
                s(self, name, getattr(self, name).lower() in ("1", "true", "yes", "on"))
        if isinstance(self.old_secret_keys, str):  # "a, b" as from an environment variable
            s(self, "old_secret_keys", tuple(k.strip() for k in self.old_secret_keys.split(",") if k.strip()))
        if isinstance(self.include, str):
            s(self, "include", tuple(m.strip() for m in self.include.split(",") if m.strip()))
        s(self, "old_secret_keys", tuple(self.old_secret_keys))
        s(self, "include", tuple(self.include))
        if not isinstance(self.task_flags, Mapping):
            raise ConfigurationError("task_flags must map task names to flag dicts")
        for task, flags in self.task_flags.items():
            if not isinstance(flags, Mapping):
                raise ConfigurationError(f"task_flags[{task!r}] must be a dict of flags")
            check_flag_names(flags, f"flag in task_flags[{task!r}]:")
        check_flag_names(self.task_defaults, "flag in task_defaults:")
        defaults = TaskOptions(**self.task_defaults)  # validate values early
        for task, flags in self.task_flags.items():
            try:
                defaults.merged(flags)
            except ConfigurationError as exc:
                raise ConfigurationError(f"task_flags[{task!r}]: {exc}") from None

    @property
    def default_options(self) -> TaskOptions:
        return TaskOptions(**self.task_defaults)


SETTING_NAMES = frozenset(f.name for f in fields(AppSettings))


def load_settings(
    settings: Mapping[str, Any] | str | None,
    explicit: Mapping[str, Any],
    environ: Mapping[str, str] | None = None,
    defaults: Mapping[str, Any] | None = None,
) -> AppSettings:
    """Build settings: explicit keyword > settings (dict or module path) > TASKQ_* env >
    ``defaults`` (the app's own, such as its namespace) > built-in default."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = dict(defaults or {})
    for name in SETTING_NAMES - {"task_flags", "task_defaults"}:
        raw = env.get("TASKQ_" + name.upper())
        if raw is not None and raw != "":
            values[name] = raw
    values.update(_settings_mapping(settings))
    values.update({k: v for k, v in explicit.items() if v is not None})
    unknown = sorted(set(values) - SETTING_NAMES)
    if unknown:
        raise ConfigurationError(f"unknown setting(s) {', '.join(map(repr, unknown))}; known: {', '.join(sorted(SETTING_NAMES))}")
    return AppSettings(**values)


def _settings_mapping(settings: Mapping[str, Any] | str | None) -> dict[str, Any]:
    if settings is None:
        return {}
    if isinstance(settings, str):
        try:
            module = importlib.import_module(settings)
        except ImportError as exc:
            raise ConfigurationError(f"cannot import settings module {settings!r}: {exc}") from None
        out = {}
        for name in dir(module):
            if name.isupper() and name.lower() in SETTING_NAMES:
                out[name.lower()] = getattr(module, name)
            elif name in SETTING_NAMES:
                out[name] = getattr(module, name)
        return out
    if isinstance(settings, Mapping):
        return dict(settings)
    raise ConfigurationError(f"settings must be a dict or a module path, not {type(settings).__name__}")


def warn_unknown_task_flags(settings: AppSettings, known: set[str]) -> list[str]:
    """Warn about task names in ``task_flags`` that no registered task has."""
    missing = sorted(set(settings.task_flags) - known)
    for name in missing:
        warnings.warn(f"settings task_flags names task {name!r}, which no registered task has", stacklevel=3)
    return missing
