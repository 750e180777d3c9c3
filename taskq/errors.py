"""Every exception taskq raises, in one place.

Scripts return negative codes; :func:`error_for_code` maps them to these
exceptions so callers never see raw Redis replies.
"""

from __future__ import annotations

import datetime as dt


class TaskQError(Exception):
    """Base class of every taskq error."""


class ConfigurationError(TaskQError, ValueError):
    """A flag, setting or argument has a bad value."""


class UnknownTask(TaskQError, LookupError):
    """A task name that no registered task has."""


class BrokerUnavailable(TaskQError, ConnectionError):
    """The Redis server could not be reached (after retrying)."""


class ServerLoading(BrokerUnavailable):
    """The server is up but still loading its data set into memory (it was
    just restarted); it answers once loading ends."""


class BrokerRefused(TaskQError):
    """The server is up but refused the write (out of memory, read-only replica...)."""


class DurabilityUnavailable(TaskQError):
    """`durable=True` was asked for but the server cannot confirm AOF writes.
    ``results``: the enqueue's (id, created, state) rows, where the jobs were
    written all the same."""

    results: list[tuple[str, bool, str]] | None = None


class NotDurable(DurabilityUnavailable):
    """A durable enqueue was not confirmed on the master's AOF and on
    ``durable_replicas`` replicas within ``durable_timeout``: after a
    failover the job may be gone. The job may exist (it was written to the
    master): ``job_id`` (the first of ``job_ids``) says which."""

    job_ids: list[str]

    def __init__(self, message: str, job_ids: list[str] | None = None) -> None:
        super().__init__(message)
        self.job_ids = list(job_ids or [])

    @property
    def job_id(self) -> str | None:
        return self.job_ids[0] if self.job_ids else None


class ServerNotFound(TaskQError):
    """No Valkey/Redis server binary could be found for the embedded server."""


class ServerStartError(TaskQError):
    """The embedded server did not start."""


class ServerStopError(TaskQError, TimeoutError):
    """The embedded server did not answer, refused to shut down, or did not exit in time."""


class PayloadTooLarge(TaskQError, ValueError):
    """The encoded arguments exceed ``max_payload_bytes``."""


class JobNotFound(TaskQError, LookupError):
    """No job with that id exists (never did, or its data expired)."""


class InvalidJobState(TaskQError):
    """The operation makes no sense in the job's current state."""

    def __init__(self, job_id: str, state: str, operation: str) -> None:
        super().__init__(f"cannot {operation} job {job_id!r}: it is {state}")
        self.job_id = job_id
        self.state = state
        self.operation = operation


class NoResult(TaskQError):
    """The job succeeded but its task keeps no return value (``tombstone=False``)."""


class ResultTimeout(TaskQError, TimeoutError):
    """``Job.result()`` waited its timeout; the job goes on."""


class TaskFailed(TaskQError):
    """The job ended in a state other than succeeded.

    Carries the remote exception's type name, message and traceback text.
    """

    def __init__(
        self,
        job_id: str,
        state: str,
        exc_type: str = "",
        message: str = "",
        traceback: str = "",
    ) -> None:
        text = f"job {job_id} {state}"
        if exc_type:
            text += f": {exc_type}: {message}"
        super().__init__(text)
        self.job_id = job_id
        self.state = state
        self.exc_type = exc_type
        self.message = message
        self.traceback = traceback


class SignatureError(TaskQError):
    """A job's signature is missing or does not match any accepted key."""


# --- exceptions a task raises to steer its own job -------------------------


class Retry(Exception):
    """Raise inside a task to retry it after ``countdown`` (seconds or a timedelta)."""

    def __init__(self, countdown: float | dt.timedelta | None = None, reason: str = "") -> None:
        super().__init__(reason or "retry requested")
        self.countdown = countdown
        self.reason = reason


class Requeue(Exception):
    """Raise inside a task to give the job back to its queue (no attempt counted)."""

    def __init__(self, reason: str = "", countdown: float | dt.timedelta | None = None) -> None:
        super().__init__(reason or "requeue requested")
        self.reason = reason
        self.countdown = countdown


class Cancelled(Exception):
    """Raised at a checkpoint of a task whose job was cancelled."""


class TaskTimeout(Exception):
    """Raised inside a task when its ``timeout`` expires (the soft limit)."""


# --- script error codes -----------------------------------------------------

E_NOT_FOUND = -1
E_BAD_STATE = -2


def error_for_code(code: int, job_id: str, state: str, operation: str) -> TaskQError:
    """The exception for a negative code returned by a job-control script."""
    if code == E_NOT_FOUND:
        return JobNotFound(f"no job {job_id!r}")
    if code == E_BAD_STATE:
        return InvalidJobState(job_id, state, operation)
    return TaskQError(f"{operation} of job {job_id!r} failed with code {code}")
