"""The entry point of a worker child process: one consumer per worker id,
in threads when there are several."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING, Any

from .child import Consumer
from .config import WorkerConfig
from .shared import Slot

if TYPE_CHECKING:
    from ..app import TaskQ

log = logging.getLogger("taskq.worker")


def child_main(app: TaskQ, config: WorkerConfig, worker_ids: list[str], slots: list[Slot],
               log_setup: Any = None) -> None:
    """Entry point of a forked child process: one consumer per worker id."""
    if log_setup is not None:
        log_setup()
    app._backend = None  # never share the parent's sockets
    app._slots = None
    stopping = threading.Event()
    consumers = [Consumer(app, config, wid, slot, stopping) for wid, slot in zip(worker_ids, slots)]
    consumers[0].install_signals()
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})  # blocked by the supervisor until now
    try:
        if len(consumers) == 1:
            consumers[0].run()
        else:
            threads = [threading.Thread(target=_run_thread, args=(c,), name=f"taskq-consumer-{i}", daemon=True)
                       for i, c in enumerate(consumers)]
            for t in threads:
                t.start()
            for t in threads:
                while t.is_alive():
                    t.join(0.5)  # a bounded join: signal handlers run in this thread meanwhile
    except KeyboardInterrupt:
        pass
    os._exit(0)


def _run_thread(consumer: Consumer) -> None:
    """A consumer thread: an unexpected error ends the whole child (the
    supervisor reaps its jobs and starts a new one), never one thread alone."""
    try:
        consumer.run()
    except BaseException:
        log.exception("consumer %s failed; restarting this worker process", consumer.worker_id)
        os._exit(1)
