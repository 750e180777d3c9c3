"""taskq: a distributed task queue for Python on Redis or Valkey."""

from .app import TaskQ
from .canvas import Chain, Chord, Group, Signature, chain, chord, group
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
from .workflow import MemberOutcome, Workflow

__version__ = "0.1.0"

__all__ = [
    "BrokerRefused",
    "Chain",
    "Chord",
    "Group",
    "MemberOutcome",
    "Signature",
    "Workflow",
    "chain",
    "chord",
    "group",
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
