"""Run mypy on ``api_types.py`` as a user's code would be checked: from a
directory outside the repository, against the installed taskq."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent


def expectations(source: str) -> tuple[dict[int, str], dict[int, str]]:
    reveals, errors = {}, {}
    for n, line in enumerate(source.splitlines(), 1):
        if m := re.search(r"# T: (.+)$", line):
            reveals[n] = m.group(1).strip()
        elif m := re.search(r"# E: ([a-z-]+)$", line):
            errors[n] = m.group(1)
    return reveals, errors


def test_the_api_types_are_what_a_user_sees(tmp_path):
    pytest.importorskip("mypy")
    src = (HERE / "api_types.py").read_text()
    shutil.copy(HERE / "api_types.py", tmp_path / "api_types.py")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--strict", "--no-incremental", "--show-error-codes",
                           "--hide-error-context", "--no-pretty", "api_types.py"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=300)
    out = proc.stdout
    assert "Cannot find implementation or library stub" not in out, out  # taskq's own hints were read
    reveals, errors = expectations(src)
    seen_reveals = {int(m.group(1)): m.group(2) for m in re.finditer(r"api_types\.py:(\d+): note: Revealed type is \"(.+)\"", out)}
    seen_errors = {int(m.group(1)): m.group(2) for m in re.finditer(r"api_types\.py:(\d+): error: .*\[([a-z-]+)\]$", out, re.M)}
    assert seen_reveals == reveals, out
    assert seen_errors == errors, out
