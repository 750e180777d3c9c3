"""Worker configuration (frozen; defaults and validation live here)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..errors import ConfigurationError


@dataclass(frozen=True)
class WorkerConfig:
    concurrency: int = field(default_factory=lambda: os.cpu_count() or 1)  # child processes
    threads: int = 1  # jobs each child runs at once, one consumer thread each
    queues: tuple[str, ...] = ("default",)
    tasks: tuple[str, ...] = ()  # serve only these task names (empty = all)
    prefetch: int = 100  # most jobs one child leases per claim
    batch_budget: float = 0.02  # a claim holds at most ~this many seconds of work
    flush_interval: float = 0.01  # outcomes wait at most this long for a batch
    scheduler: bool = True
    shutdown_timeout: float = 30.0
    block_timeout: float = 1.0  # longest sleep on an empty queue before re-checking flags

    def __post_init__(self) -> None:
        if self.concurrency < 1:
            raise ConfigurationError("concurrency must be >= 1")
        if self.threads < 1:
            raise ConfigurationError("threads must be >= 1")
        if self.prefetch < 1:
            raise ConfigurationError("prefetch must be >= 1")
        if not self.queues or any(not q for q in self.queues):
            raise ConfigurationError("at least one queue name is needed")
        for q in self.queues:  # no job can be in such a queue (see TaskOptions)
            if any(c in q for c in " :{}"):
                raise ConfigurationError(f"queue names have no spaces, ':' or braces, not {q!r} "
                                         "(separate queues with commas)")
        if self.shutdown_timeout < 0:
            raise ConfigurationError("shutdown_timeout must be >= 0")
