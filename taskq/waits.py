"""The wait for a job's outcome, without its I/O: one generator that
``Job.result``/``wait`` drive with blocking calls and their awaited forms
drive with ``await`` (:func:`drive` and :func:`adrive`).

A server lost during the wait (``BrokerUnavailable``: a failover, a
restart) does not end it: the wait pauses (see :func:`retry_pause_cap`), watches the job again on whatever server now
answers -- the outcome may have been pushed while it was away, and the new
master must know the job is watched -- and waits on, until its own timeout.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Generator
from typing import Any, Protocol

import msgpack

from .appview import AppView
from .errors import BrokerUnavailable, JobNotFound, ResultTimeout
from .states import JobState

# Longest single blocking call; longer waits loop (keeps below the socket timeout).
WAIT_SLICE = 10.0
FIRST_PAUSE = 0.05

Steps = Generator[tuple[str, float], Any, tuple[str, bytes]]


def not_found(app: AppView, job_id: str) -> JobNotFound:
    """The error for a job id with no job: it names the retention that drops
    finished jobs, the likeliest reason a job once there is gone."""
    s = app.settings
    return JobNotFound(f"no job {job_id!r} (never created, deleted, or expired: a finished job is kept "
                       f"succeeded_ttl={s.succeeded_ttl:g}s, a failed one failed_ttl={s.failed_ttl:g}s)")


def retry_pause_cap(app: AppView) -> float:
    """Longest pause between tries at a lost server (result waits, the event
    listener, workers, the scheduler): a fifth of ``heartbeat_timeout``, at
    most 2 s, so a new master is found well within ``heartbeat_timeout``."""
    return max(FIRST_PAUSE, min(app.settings.heartbeat_timeout / 5, 2.0))


def outcome_steps(app: AppView, job_id: str, timeout: float) -> Steps:
    """Yields ``("watch", within)`` (send back the watch reply, ``(state,
    blob)``), ``("wait", seconds)`` (send back the pushed outcome or None)
    or ``("pause", seconds)`` (sleep, send back None); a watch or wait that
    found no server is thrown in as ``BrokerUnavailable``. Returns (final
    state, value-or-error blob) or raises."""
    deadline = time.monotonic() + timeout
    pause, cap = FIRST_PAUSE, retry_pause_cap(app)
    # Always watch first, tombstone or not: it marks the job (wt) so that
    # every way it can finish pushes its outcome -- the scripts' own
    # finalizations (cancel before it ran, cancelled or skipped at claim,
    # worker lost) keep no result (keep_ms 0) and push only for a watched job.
    watched = False
    while True:
        left = deadline - time.monotonic()
        try:
            if not watched:
                state, blob = yield "watch", min(max(left, 0.0), WAIT_SLICE)
                if not state:
                    raise not_found(app, job_id)
                if JobState(state).finished:
                    return state, blob
                watched, pause = True, FIRST_PAUSE
                continue
            if left <= 0:
                break
            raw = yield "wait", min(left, WAIT_SLICE)
        except BrokerUnavailable:
            left = deadline - time.monotonic()
            if left <= 0:
                raise
            yield "pause", min(pause, left)
            pause, watched = min(pause * 2, cap), False
            continue
        if raw is not None:
            state, raw_blob = msgpack.unpackb(raw, raw=True)
            return str(state.decode()), raw_blob
    state, blob = yield "watch", 0.0
    if not state:
        raise not_found(app, job_id)
    if JobState(state).finished:
        return state, blob
    raise ResultTimeout(f"job {job_id} still {state} after {timeout:g}s")


class _Waits(Protocol):
    def watch(self, job_id: str, within: float | None = None) -> Any: ...
    def wait_outcome(self, job_id: str, timeout: float) -> Any: ...


def drive(steps: Steps, backend: _Waits, job_id: str) -> tuple[str, bytes]:
    """Run ``steps`` with blocking calls."""
    reply: Any = None
    lost: BrokerUnavailable | None = None
    while True:
        try:
            op, seconds = steps.send(reply) if lost is None else steps.throw(lost)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, lost = None, None
        try:
            if op == "watch":
                reply = backend.watch(job_id, within=seconds)
            elif op == "wait":
                reply = backend.wait_outcome(job_id, seconds)
            else:
                time.sleep(seconds)
        except BrokerUnavailable as exc:
            lost = exc


async def adrive(steps: Steps, backend: _Waits, job_id: str) -> tuple[str, bytes]:
    """Run ``steps`` with awaited calls (``backend``'s return awaitables)."""
    reply: Any = None
    lost: BrokerUnavailable | None = None
    while True:
        try:
            op, seconds = steps.send(reply) if lost is None else steps.throw(lost)
        except StopIteration as done:
            return done.value  # type: ignore[no-any-return]
        reply, lost = None, None
        try:
            if op == "watch":
                reply = await backend.watch(job_id, within=seconds)
            elif op == "wait":
                reply = await backend.wait_outcome(job_id, seconds)
            else:
                await asyncio.sleep(seconds)
        except BrokerUnavailable as exc:
            lost = exc
