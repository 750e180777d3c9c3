"""The code's own checks, run with the tests: ``mypy --strict`` over the
package and ``ruff`` over everything (their settings: pyproject.toml)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_mypy_strict_is_clean():
    proc = run("mypy")  # files and strictness from [tool.mypy]
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_ruff_is_clean():
    proc = run("ruff", "check", "taskq", "taskq_cli", "tests", "benchmarks", "examples")
    assert proc.returncode == 0, proc.stdout + proc.stderr
