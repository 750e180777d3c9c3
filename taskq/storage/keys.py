"""Every Redis key name taskq uses, made by one object.

The Lua scripts build the same names from the prefix (see ``lua/_lib.lua``);
``tests/storage/test_keys.py`` checks that the two agree. The namespace sits
in a hash tag so that all keys of a namespace share one Redis Cluster slot.
With the ``queue`` key layout (``storage/layout.py``) each queue is such a
namespace of its own, ``<ns>:<queue>``, and ``<ns>`` keeps the registry.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# Upper bounds (ms) of the run-time histogram buckets: the fields of
# ``st:h:<task>`` are ``le_<bound>`` for these, ``le_inf`` and ``sum_ms``.
# How long a per-minute stats bucket (``st:m:<minute>``) lives: two hours, so
# the last hour is always whole. The Lua prelude has the same MINUTE_TTL_MS.
MINUTE_BUCKET_TTL_MS = 7_200_000
HISTOGRAM_BUCKETS_MS = (1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 30000, 60000, 300000)


@dataclass(frozen=True)
class Keys:
    """Key names of one namespace."""

    namespace: str

    @property
    def prefix(self) -> str:
        return "{" + self.namespace + "}:"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}j:{job_id}"

    def result(self, job_id: str) -> str:
        return f"{self.prefix}r:{job_id}"

    def ready(self, queue: str, priority: int | str) -> str:
        return f"{self.prefix}q:{queue}:{priority}"

    def priorities(self, queue: str) -> str:
        return f"{self.prefix}qp:{queue}"

    def notify(self, queue: str) -> str:
        return f"{self.prefix}qn:{queue}"

    # Flow control (docs/flow-control.md): every key a claim touches for a
    # limit names its queue, so a limit counts per queue. ``limiter`` is
    # ``t:<task>`` / ``k:<rate key>`` (rate), ``c:<task>`` (concurrency) or
    # ``s:<resource>`` (a resource with resource_limit > 1).

    def paused(self, queue: str) -> str:
        """Present while the queue is paused."""
        return f"{self.prefix}pz:{queue}"

    def parked(self, queue: str) -> str:
        """Zset of the queue's limiters holding jobs back, scored by the time
        (ms) to look at each again."""
        return f"{self.prefix}fp:{queue}"

    def parked_jobs(self, queue: str, limiter: str) -> str:
        """The jobs one limiter holds back, oldest at the right (FIFO)."""
        return f"{self.prefix}fh:{queue}:{limiter}"

    def rate(self, queue: str, limiter: str) -> str:
        """A rate limiter's theoretical arrival time (GCRA, ms)."""
        return f"{self.prefix}fr:{queue}:{limiter}"

    def slots(self, queue: str, limiter: str) -> str:
        """The ids of the active jobs holding a concurrency limiter's slots."""
        return f"{self.prefix}fs:{queue}:{limiter}"

    def expiring(self, queue: str) -> str:
        """Zset of the queue's jobs with an expiry, scored by it (ms)."""
        return f"{self.prefix}xp:{queue}"

    @property
    def queues(self) -> str:
        return f"{self.prefix}queues"

    @property
    def layout(self) -> str:
        """The namespace's key layout (``queue``); absent: the one-slot layout."""
        return f"{self.prefix}layout"

    @property
    def slot_queues(self) -> str:
        """Set: the queues that have a slot of their own (``queue`` layout)."""
        return f"{self.prefix}slots"

    @property
    def schedule(self) -> str:
        return f"{self.prefix}sched"

    @property
    def schedule_wake(self) -> str:
        return f"{self.prefix}schedw"

    @property
    def workers(self) -> str:
        return f"{self.prefix}workers"

    @property
    def reaper(self) -> str:
        """The reapers' shared watch: time of the last pass, start of the unbroken watch."""
        return f"{self.prefix}reaper"

    def worker(self, worker_id: str) -> str:
        return f"{self.prefix}w:{worker_id}"

    def worker_jobs(self, worker_id: str) -> str:
        return f"{self.prefix}wj:{worker_id}"

    def unique(self, key: str) -> str:
        return f"{self.prefix}u:{key}"

    def lock(self, resource: str) -> str:
        return f"{self.prefix}l:{resource}"

    def lock_waiters(self, resource: str) -> str:
        return f"{self.prefix}lw:{resource}"

    def pending_dependencies(self, job_id: str) -> str:
        """Set: the dependencies a waiting job still waits for."""
        return f"{self.prefix}dp:{job_id}"

    def dependency_values(self, job_id: str) -> str:
        """Hash: what its finished dependencies left (``<index>`` value, ``x<index>`` state, ``f``)."""
        return f"{self.prefix}dv:{job_id}"

    @property
    def outbox(self) -> str:
        """List: msgpack entries for other queues' slots (lua/_lib.lua, flush_outbox)."""
        return f"{self.prefix}ob"

    def workflow_members(self, job_id: str) -> str:
        """List: the jobs of a workflow handle, in creation order."""
        return f"{self.prefix}wm:{job_id}"

    @property
    def failed(self) -> str:
        return f"{self.prefix}failed"

    @property
    def done(self) -> str:
        return f"{self.prefix}done"

    @property
    def stalled(self) -> str:
        return f"{self.prefix}stalled"

    @property
    def cron(self) -> str:
        return f"{self.prefix}cron"

    @property
    def tasks(self) -> str:
        return f"{self.prefix}tasks"

    @property
    def events(self) -> str:
        return f"{self.prefix}events"

    @property
    def stats_counters(self) -> str:
        """All-time counters, one field per ``<queue>:<task>|<counter>``."""
        return f"{self.prefix}st:c"

    def stats_histogram(self, task: str) -> str:
        return f"{self.prefix}st:h:{task}"

    def stats_minute(self, minute: int) -> str:
        """Counters of one minute, one field per ``q:<queue>|<counter>`` (expires after 2 h)."""
        return f"{self.prefix}st:m:{minute}"

    @property
    def pattern(self) -> str:
        """A SCAN pattern matching every key of the namespace."""
        return self.scan_pattern("")

    def scan_pattern(self, start: str) -> str:
        """A SCAN pattern matching the namespace's keys that begin with ``start``:
        the namespace is matched literally (``a*`` must not match ``abc``)."""
        return glob_escape(self.prefix + start) + "*"


def glob_escape(text: str) -> str:
    """``text`` to be matched literally in a SCAN/KEYS glob pattern."""
    return re.sub(r"([\\*?\[\]{}])", r"\\\1", text)
