"""Turning a call into the fields of one job (validated, encoded once)."""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import os
import secrets
from collections.abc import Mapping
from typing import Any

from . import codec, signing
from .errors import ConfigurationError, PayloadTooLarge
from .options import CALL_FLAGS, AppSettings, TaskOptions, check_flag_names, seconds
from .storage.records import EnqueueRequest

# Per-call options stored with the job and honoured by the worker.
EXEC_FLAGS = frozenset({
    "retry", "max_lost", "retry_interval", "retry_backoff", "retry_max_interval", "retry_jitter",
    "retry_on", "dont_retry_on", "timeout", "timeout_grace", "tombstone", "tombstone_ttl",
})


class _JobIds:
    """Job ids: 12 random url-safe characters drawn once per process (and
    again after a fork), then a counter; never starting with '-' (a command
    line would take such an id for an option). Unique without a system call
    per job.

    The counter is in hex after one character giving its number of digits,
    so a process's ids sort as they were made: jobs due at the same
    millisecond (a ``map()`` with a delay) are promoted in that order, and
    the schedule orders equal due times by id."""

    def __init__(self) -> None:
        self._pid = -1
        self._prefix = ""
        self._count = itertools.count()

    def __call__(self) -> str:
        if self._pid != os.getpid():
            self._pid = os.getpid()
            prefix = secrets.token_urlsafe(9)
            self._prefix = "_" + prefix[1:] if prefix.startswith("-") else prefix
            self._count = itertools.count()
        n = f"{next(self._count):x}"
        return f"{self._prefix}{_LENGTHS[len(n)]}{n}"


_LENGTHS = " 123456789abcdefg"  # the number of hex digits of a counter, in sorting order


new_job_id = _JobIds()


def _ms(value: float | None) -> int:
    return int(round((value or 0.0) * 1000))


def _eta_ms(eta: dt.datetime | None) -> int:
    if eta is None:
        return 0
    if not isinstance(eta, dt.datetime):
        raise ConfigurationError(f"eta must be a timezone-aware datetime, not {type(eta).__name__}")
    if eta.tzinfo is None or eta.utcoffset() is None:
        raise ConfigurationError(
            "eta must be timezone-aware (e.g. datetime.now(timezone.utc) + timedelta(...)); "
            "a naive datetime is ambiguous across machines"
        )
    return int(eta.timestamp() * 1000)


def encode_payload(settings: AppSettings, task: str, args: tuple[Any, ...] | list[Any],
                   kwargs: Mapping[str, Any]) -> bytes:
    """A job's encoded arguments: ``TypeError`` naming an argument msgpack
    cannot encode, ``PayloadTooLarge`` over ``max_payload_bytes``."""
    payload = codec.encode_args(args, kwargs if type(kwargs) is dict else dict(kwargs))
    if len(payload) > settings.max_payload_bytes:
        raise PayloadTooLarge(
            f"arguments of {task} encode to {len(payload)} bytes, over max_payload_bytes="
            f"{settings.max_payload_bytes}; pass a reference (an id, a URL) instead of the data"
        )
    return payload


def _names(spec: Any) -> list[str]:
    if isinstance(spec, (type, str)):
        spec = (spec,)
    return [s if isinstance(s, str) else s.__name__ for s in spec]


class JobBuilder:
    """Builds the 16 enqueue fields (see storage/lua/enqueue.lua) of jobs of
    one task under one set of options: what every such job shares (stored
    per-call options, delay, caps) is validated and encoded once, so a job
    costs one argument encode and a few checks.

    ``options`` are the effective options (call overrides applied); ``call``
    holds the overrides given for this call only, stored with the job.
    """

    __slots__ = ("settings", "task", "options", "opts_blob", "delay_ms", "unique_ttl_ms", "max_attempts",
                 "flow_head", "flow")

    def __init__(self, settings: AppSettings, task: str, options: TaskOptions, call: Mapping[str, Any]) -> None:
        check_flag_names(call, "option")
        not_per_call = sorted(set(call) - CALL_FLAGS)
        if not_per_call:
            raise ConfigurationError(
                f"{', '.join(map(repr, not_per_call))} cannot be given per call (a function is not stored "
                "with the job): set it on the task or in settings task_flags"
            )
        stored = {k: v for k, v in call.items() if k in EXEC_FLAGS}
        for k in ("retry_on", "dont_retry_on"):
            if k in stored:
                stored[k] = _names(stored[k])
        self.settings = settings
        self.task = task
        self.options = options
        self.opts_blob = codec.dumps(stored) if stored else ""
        self.delay_ms = _ms(seconds("delay", options.delay))
        self.unique_ttl_ms = _ms(options.unique_ttl)
        self.max_attempts = options.max_attempts if "retry" in call else ""
        if callable(call.get("rate_limit_key")):
            raise ConfigurationError("rate_limit_key per call must be a string (a function is not stored with "
                                     "the job): set a function on the task or in settings task_flags")
        self.flow_head = flow_head(options)
        self.flow = bool(self.flow_head.strip("|")) or options.rate_limit_key is not None or (
            options.resource_limit > 1)

    def build(
        self,
        args: tuple[Any, ...] | list[Any],
        kwargs: Mapping[str, Any],
        *,
        job_id: str | None = None,
        eta: dt.datetime | None = None,
        front: bool = False,
        unique_key: str | None = None,
        resource: str | None = None,
    ) -> EnqueueRequest:
        """The fields of one job."""
        settings, task, options = self.settings, self.task, self.options
        payload = encode_payload(settings, task, args, kwargs)
        if job_id is None:
            jid = new_job_id()
        elif not isinstance(job_id, str) or not job_id or len(job_id) > 200:
            raise ConfigurationError("job_id must be a non-empty string of at most 200 characters")
        else:
            jid = job_id
        ukey = unique_key or ""
        if not ukey and options.unique:
            same = payload  # keyword arguments in any order are the same arguments
            if len(kwargs) > 1 and list(kwargs) != sorted(kwargs, key=str):
                same = codec.encode_args(args, {k: kwargs[k] for k in sorted(kwargs, key=str)})
            ukey = f"{task}:{hashlib.sha1(same).hexdigest()[:24]}"
        res = resource
        if res is None and options.resource is not None:
            res = options.resource(*args, **kwargs) if callable(options.resource) else options.resource
        if res is not None and (not isinstance(res, str) or not res):
            raise ConfigurationError(f"resource must be a non-empty string, not {res!r}")
        sig = signing.sign(settings.secret_key, jid, task, payload) if settings.secret_key else ""
        flow = self.flow_spec(args, kwargs, res) if self.flow else ""
        return EnqueueRequest(
            jid, task, options.queue, options.priority, payload, self.opts_blob, self.delay_ms,
            _eta_ms(eta) if eta is not None else 0, ukey, self.unique_ttl_ms, 1 if front else 0,
            res or "", options.on_locked, self.max_attempts, sig, flow,
        )

    def flow_spec(self, args: tuple[Any, ...] | list[Any], kwargs: Mapping[str, Any], res: str | None) -> str:
        """The job's flow-control spec (see storage/lua/_lib.lua): the shared
        head, its resource's limit and its rate key."""
        options = self.options
        key = options.rate_limit_key
        if callable(key):
            key = key(*args, **kwargs)
        if key is not None and (not isinstance(key, str) or not key):
            raise ConfigurationError(f"rate_limit_key must give a non-empty string, not {key!r}")
        limit = options.resource_limit if res and options.resource_limit > 1 else ""
        spec = f"{self.flow_head}{limit}|{key if options.rate_limit and key else ''}"
        return "" if spec == "||||||" else spec


def flow_head(options: TaskOptions) -> str:
    """The fields of a flow-control spec every job of these options shares:
    expiry (absolute ms, or "+<ms>" from the enqueue on the server's clock),
    rate count, period ms, burst, concurrency."""
    exp: int | str = ""
    if isinstance(options.expires, dt.datetime):
        exp = int(options.expires.timestamp() * 1000)
    elif options.expires is not None:
        exp = f"+{_ms(seconds('expires', options.expires))}"
    rate = options.rate_limit
    count, period = ("", "") if not isinstance(rate, tuple) else (rate[0], max(1, _ms(rate[1])))
    burst = options.rate_burst if rate and options.rate_burst else ""
    return f"{exp}|{count}|{period}|{burst}|{options.concurrency or ''}|"


def build_job(
    settings: AppSettings,
    task: str,
    args: tuple[Any, ...] | list[Any],
    kwargs: Mapping[str, Any],
    options: TaskOptions,
    call: Mapping[str, Any],
    **where: Any,
) -> EnqueueRequest:
    """The fields of one job (a :class:`JobBuilder` used once)."""
    return JobBuilder(settings, task, options, call).build(args, kwargs, **where)
