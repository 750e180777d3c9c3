"""Runs one claimed job in the current process and decides its outcome.

Policy lives here: retry or fail, how long to keep results, soft timeout.
The hard timeout is the supervisor's (it kills the child).
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import math
import random
import signal
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from .. import codec, signing, tracing
from ..context import JobContext, reset_current, set_current
from ..errors import Cancelled, ConfigurationError, Requeue, Retry, SignatureError, TaskTimeout, UnknownTask
from ..options import MAX_DELAY, TaskOptions, seconds
from ..storage.records import ClaimedJob
from ..workflow import FLOW_MARK, SENDS_VALUE, TAKES_VALUE
from . import aio
from .outcome import Outcome, error_entry
from .watchdog import SoftTimeoutExpired, watchdog

if TYPE_CHECKING:
    from ..app import TaskQ
    from ..storage.backend import Backend

log = logging.getLogger("taskq.worker")


class _SoftTimeout:
    """Raises TaskTimeout in the task after ``seconds``: by SIGALRM in the main
    thread, by the watchdog's asynchronous exception in any other."""

    def __init__(self, seconds: float | None) -> None:
        self.seconds = seconds
        self.main = threading.current_thread() is threading.main_thread()
        self.token = 0

    def error(self) -> TaskTimeout:
        return TaskTimeout(f"task exceeded its timeout of {self.seconds:g}s")

    def _fire(self, signum: int, frame: Any) -> None:
        raise self.error()

    def __enter__(self) -> _SoftTimeout:
        if not self.seconds:
            return self
        if self.main:
            self._old = signal.signal(signal.SIGALRM, self._fire)
            signal.setitimer(signal.ITIMER_REAL, self.seconds)
        else:
            self.token = watchdog.token()  # held first: close() can then always disarm it
            watchdog.arm(self.token, self.seconds)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if not self.seconds:
            return
        if self.main:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, self._old)
            return
        self.close()
        if exc_type is SoftTimeoutExpired:
            raise self.error().with_traceback(tb) from None

    def close(self) -> None:
        """Disarm the watchdog (idempotent); once this returns no exception
        of it can arrive. One fired on the way in is dropped: the task had
        already returned."""
        while self.token:
            try:
                watchdog.disarm(self.token)
                self.token = 0
            except SoftTimeoutExpired:
                continue


def _countdown(exc: Retry | Requeue) -> float | None:
    """The countdown of a Retry/Requeue in seconds: a number or a timedelta,
    finite and at most ``MAX_DELAY`` (a negative one means at once);
    ConfigurationError otherwise."""
    value = seconds("countdown", exc.countdown, allow_none=True, minimum=-math.inf)
    if value is not None and not math.isfinite(value):
        raise ConfigurationError(f"{type(exc).__name__} countdown must be finite, not {value!r}")
    if value is not None and value > MAX_DELAY:
        raise ConfigurationError(f"{type(exc).__name__} countdown must be at most {MAX_DELAY:g} seconds, "
                                 f"not {value!r}")
    return value


class Executor:
    def __init__(self, app: TaskQ, backend: Backend, on_start: Callable[[ClaimedJob, float], None]) -> None:
        self.app = app
        self.backend = backend
        self.on_start = on_start  # tells the supervisor what runs, and its hard deadline
        self.settings = app.settings
        self.keys = [k for k in (self.settings.secret_key, *self.settings.old_secret_keys) if k]
        self.current: JobContext | None = None

    def _options(self, job: ClaimedJob) -> TaskOptions:
        return self.app.job_options(job.task, job.opts)

    @staticmethod
    def _flow(job: ClaimedJob) -> int:
        """The workflow bits of a job (0 for one of no workflow, see taskq.flowplan)."""
        if not job.opts or FLOW_MARK.encode() not in job.opts:
            return 0
        overrides = codec.loads(job.opts)
        return int(overrides.get(FLOW_MARK, 0)) if isinstance(overrides, dict) else 0

    def run(self, job: ClaimedJob, cancel_level: int = 0) -> Outcome:
        """Run the job; always returns an outcome (never raises for task errors).
        Traced (a CONSUMER span continuing the producer's trace) when tracing is on."""
        tracer = tracing.tracer(self.settings)
        if tracer is None:
            return self._run(job, cancel_level)
        with tracing.consuming(tracer, job.id, job.task, job.queue, job.attempt, tracing.carrier_of(job.opts)) as span:
            out = self._run(job, cancel_level)
            tracing.record_outcome(span, out)
        return out

    def _run(self, job: ClaimedJob, cancel_level: int) -> Outcome:
        started = time.monotonic()
        try:
            flow = self._flow(job)
            if self.keys:  # a value the server put in front of a workflow step's arguments is not signed
                signed = codec.without_first_arg(job.payload) if flow & TAKES_VALUE else job.payload
                signing.verify(self.keys, job.id, job.task, signed, job.sig)
            if job.task not in self.app.tasks:
                raise UnknownTask(self.app.unknown_task_message(job.task))
            task = self.app.tasks[job.task]
            options = self._options(job)
            args, kwargs = codec.decode_args(job.payload)
        except (UnknownTask, SignatureError, ValueError, TypeError) as exc:
            message = str(exc)
            if isinstance(exc, (ValueError, TypeError)) and not message.startswith("undecodable payload"):
                message = f"undecodable payload: {message}"
            log.error("job %s (%s) cannot run: %s", job.id, job.task, message)
            return self._fail(job, exc, self.settings.default_options, started, message=message)

        if cancel_level:
            return self._cancelled(job, options, started, Cancelled("cancelled before it started"))
        ctx = JobContext(job.id, job.task, job.queue, job.attempt, job.token, self.backend, cancel_level)
        self.current = ctx
        hard = options.timeout + options.timeout_grace if options.timeout else 0.0
        self.on_start(job, time.monotonic() + hard if hard else 0.0)
        self._emit("job_started", job)
        token = set_current(ctx)
        soft = _SoftTimeout(None if task.is_async else options.timeout)
        try:
            with soft:
                value = task.run(ctx, args, kwargs)
            if inspect.iscoroutine(value):  # an async def task (or a wrapper returning its coroutine)
                spent = time.monotonic() - started
                value = aio.run(value, options.timeout, max(options.timeout - spent, 0.001) if options.timeout else None)
        except Cancelled as exc:
            return self._cancelled(job, options, started, exc)
        except (Requeue, Retry) as exc:
            try:
                countdown = _countdown(exc)
            except ConfigurationError as bad:
                return self._fail(job, bad, options, started)
            if isinstance(exc, Retry):
                return self._retry_or_fail(job, options, started, exc, countdown=countdown)
            out = Outcome(job.id, job.token, "requeue", task=job.task, exc=exc,
                          delay_ms=int((countdown or 0) * 1000))
            out.duration_ms = (time.monotonic() - started) * 1000
            return out
        except TaskTimeout as exc:
            soft.close()  # the watchdog's exception may land before the with block disarms it
            if isinstance(exc, SoftTimeoutExpired):
                exc = soft.error().with_traceback(exc.__traceback__)
            return self._retry_or_fail(job, options, started, exc, flag="timeout")
        except Exception as exc:
            return self._retry_or_fail(job, options, started, exc)
        except (SystemExit, KeyboardInterrupt, asyncio.CancelledError) as exc:
            # sys.exit() or a stray KeyboardInterrupt in task code (the child
            # ignores SIGINT), or an async task ending in CancelledError (it
            # awaited something cancelled): a failure of this job, never the
            # end of the worker
            return self._retry_or_fail(job, options, started, exc)
        finally:
            reset_current(token)
            self.current = None
            self.on_start(job, -1.0)
        return self._succeeded(job, task, options, started, value, flow)

    # ---------------------------------------------------------------- outcomes

    def _succeeded(self, job: ClaimedJob, task: Any, options: TaskOptions, started: float, value: Any,
                   flow: int = 0) -> Outcome:
        keep_ms = int(options.tombstone_ttl * 1000) if options.tombstone else 0
        blob = b""
        if keep_ms or flow & SENDS_VALUE:  # a workflow's step passes its value on
            try:
                blob = codec.dumps(value)
            except (TypeError, ValueError, OverflowError) as exc:
                err = TypeError(f"return value of {job.task} cannot be serialized with msgpack: {exc}")
                return self._fail(job, err, options, started)
        ttl_ms = max(int(self.settings.succeeded_ttl * 1000), keep_ms)
        out = Outcome(job.id, job.token, "ok", blob, ttl_ms=ttl_ms, keep_ms=keep_ms, task=job.task, value=value)
        out.duration_ms = (time.monotonic() - started) * 1000
        out.after += [("job_succeeded", options.on_success)]
        return out

    def _retry_or_fail(self, job: ClaimedJob, options: TaskOptions, started: float, exc: BaseException,
                       *, countdown: float | None = None, flag: str = "") -> Outcome:
        retryable = isinstance(exc, Retry) or options.should_retry(exc)
        if retryable and job.attempt < options.max_attempts:
            delay = countdown if countdown is not None else options.retry_delay(job.attempt, random.random())
            out = Outcome(job.id, job.token, "retry", error_entry(exc, job.attempt, kind=flag or "error"),
                          delay_ms=int(delay * 1000), flag=flag, task=job.task, exc=exc)
            out.duration_ms = (time.monotonic() - started) * 1000
            out.after += [("job_retried", None)]
            return out
        return self._fail(job, exc, options, started, flag=flag)

    def _fail(self, job: ClaimedJob, exc: BaseException, options: TaskOptions, started: float,
              *, flag: str = "", message: str | None = None) -> Outcome:
        out = Outcome(job.id, job.token, "fail", error_entry(exc, job.attempt, kind=flag or "error", message=message),
                      ttl_ms=int(self.settings.failed_ttl * 1000), flag=flag, task=job.task, exc=exc)
        out.keep_ms = int(options.tombstone_ttl * 1000) if options.tombstone else 0
        out.duration_ms = (time.monotonic() - started) * 1000
        out.after += [("job_failed", options.on_failure)]
        return out

    def _cancelled(self, job: ClaimedJob, options: TaskOptions, started: float, exc: BaseException) -> Outcome:
        out = Outcome(job.id, job.token, "cancel", error_entry(exc, job.attempt, kind="cancelled"),
                      ttl_ms=int(self.settings.succeeded_ttl * 1000), task=job.task, exc=exc)
        out.keep_ms = int(options.tombstone_ttl * 1000) if options.tombstone else 0
        out.duration_ms = (time.monotonic() - started) * 1000
        return out

    # ---------------------------------------------------------------- hooks

    def _emit(self, event: str, *args: Any) -> None:
        for fn in self.app.hooks.get(event, ()):
            try:
                fn(*args)
            except Exception:
                log.exception("%s hook %r raised", event, fn)

    def after_recorded(self, out: Outcome) -> None:
        """Run hooks once the outcome is stored (a hook's exception never loses the job)."""
        for event, task_hook in out.after:
            self._emit(event, out)
            if task_hook is not None:
                try:
                    if event == "job_succeeded":
                        task_hook(out.id, out.value)
                    else:
                        task_hook(out.id, out.exc)
                except Exception:
                    log.exception("%s hook of %s raised", event, out.task)
