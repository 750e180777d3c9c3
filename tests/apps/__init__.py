"""Task modules for the tests."""

from __future__ import annotations

import time


def outlast(seconds: float) -> None:
    """Keep a task busy for ``seconds`` (past its timeout), in short slices so
    the soft timeout's signal lands promptly."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        time.sleep(0.05)
