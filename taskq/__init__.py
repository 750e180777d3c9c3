"""taskq: a distributed task queue for Python on Redis or Valkey."""

from .app import TaskQ
from .context import JobContext, current_job
from .errors import (
    BrokerRefused,
    BrokerUnavailable,
    Cancelled,
    ConfigurationError,
    DurabilityUnavailable,
    InvalidJobState,
    JobNotFound,
    NoResult,
    NotDurable,
    PayloadTooLarge,
    Requeue,
    ResultTimeout,
    Retry,
    SignatureError,
    TaskFailed,
    TaskQError,
    TaskTimeout,
    UnknownTask,
)
from .job import Job, JobInfo, JobState
from .options import TaskOptions
from .task import Task

__version__ = "0.1.0"

__all__ = [
    "BrokerRefused",
    "BrokerUnavailable",
    "Cancelled",
    "ConfigurationError",
    "DurabilityUnavailable",
    "InvalidJobState",
    "Job",
    "JobContext",
    "JobInfo",
    "JobNotFound",
    "JobState",
    "NoResult",
    "NotDurable",
    "PayloadTooLarge",
    "Requeue",
    "ResultTimeout",
    "Retry",
    "SignatureError",
    "Task",
    "TaskFailed",
    "TaskOptions",
    "TaskQ",
    "TaskQError",
    "TaskTimeout",
    "UnknownTask",
    "current_job",
    "__version__",
]
