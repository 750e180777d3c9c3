"""Task options and app settings: defaults and validation live here once.

``AppSettings`` and how they are loaded are defined here; ``TaskOptions``
(``taskq.task_options``) and the checks of single values
(``taskq.validation``) are re-exported: this is the one import path.

Task options are resolved in this order (first wins)::

    per-call option > settings["task_flags"][name] > decorator > settings["task_defaults"] > built-in default

Public API units are float seconds; :meth:`TaskOptions.ms` gives the
integer milliseconds that go to Redis.
"""

from __future__ import annotations

import importlib
import os
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from .errors import ConfigurationError
from .task_options import CALL_FLAGS, FLOW_FLAGS, TASK_FLAGS, ExcSpec, TaskOptions, check_flag_names
from .validation import (
    MAX_DELAY,
    MAX_SHARDS,
    PRIORITY_NAMES,
    PRIORITY_RANGE,
    RATE_UNITS,
    check_expires,
    parse_priority,
    parse_rate,
    parse_shards,
    seconds,
)

__all__ = [
    "CALL_FLAGS", "FLOW_FLAGS", "MAX_DELAY", "MAX_SHARDS", "PRIORITY_NAMES", "PRIORITY_RANGE", "RATE_UNITS",
    "SETTING_NAMES", "TASK_FLAGS", "AppSettings", "ExcSpec", "TaskOptions", "check_expires", "check_flag_names",
    "load_settings", "parse_priority", "parse_rate", "parse_shards", "seconds",
    "warn_unknown_task_flags",
]


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
