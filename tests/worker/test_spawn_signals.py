"""A child process starts with SIGTERM blocked and unblocks it only once its
own handler is installed, so a SIGTERM sent right after the fork is neither
lost in the supervisor's inherited handler nor left blocked."""

from __future__ import annotations

import os
import signal
from pathlib import Path
from typing import Any

from taskq.worker import supervisor as sup
from taskq.worker.config import WorkerConfig


def test_a_child_starts_with_sigterm_blocked(app, tmp_path, monkeypatch):
    seen = tmp_path / "mask"

    def child_main(*args: Any) -> None:
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, set())
        Path(seen).write_text("blocked" if signal.SIGTERM in blocked else "open")
        os._exit(0)

    monkeypatch.setattr(sup, "child_main", child_main)
    s = sup.Supervisor(app, WorkerConfig(concurrency=1))
    child = s.spawn(0)
    child.process.join(10)
    assert seen.read_text() == "blocked"
    # the supervisor's own mask is as it was
    assert signal.SIGTERM not in signal.pthread_sigmask(signal.SIG_BLOCK, set())
