"""The storage facade: :class:`Backend` is every Redis call of one namespace,
assembled from focused parts. The only package that imports ``redis``.

Policy (when to retry, how long to keep a job) lives in the callers; storage
knows key names and commands, and turns Redis errors into taskq's.

- ``connection``: connections, the script runner, error translation;
- ``enqueueing`` and ``plain_enqueue``: creating jobs;
- ``leases``: claims, outcomes, heartbeats and reaping;
- ``scheduling``: due jobs, cron ticks, retention;
- ``jobcontrol``: operations on one job and result waits;
- ``reads``: inspection, listings and stats;
- ``workflows``: creating workflows, reading their links.
- ``flow``: pausing queues, the flow pass of rate, concurrency and expiry;
- ``layout``: the key layout and the registry of queue slots.
"""

from __future__ import annotations

from .connection import REPLY_MARGIN, Arg, check_url, redact_url, translate_errors
from .enqueueing import Enqueueing, enqueue_args
from .flow import Flow
from .jobcontrol import JobControl
from .layout import Registry
from .leases import Leases
from .reads import Reads
from .scheduling import Scheduling
from .workflows import Workflows

__all__ = ["REPLY_MARGIN", "Arg", "Backend", "check_url", "enqueue_args", "redact_url", "translate_errors"]


class Backend(Enqueueing, Leases, Scheduling, JobControl, Reads, Workflows, Flow, Registry):
    """Redis mechanics for one namespace."""
