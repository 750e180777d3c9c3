"""CI runs the README's test command, verbatim, with pinned dependencies."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def readme_commands() -> list[str]:
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), re.S)
    return [line for block in blocks for line in block.splitlines() if line.startswith("python3 -m venv")]


def test_ci_runs_the_readmes_test_command_verbatim():
    test_command = next(c for c in readme_commands() if "pytest" in c)
    assert test_command in [line.strip() for line in (ROOT / ".ci" / "run").read_text().splitlines()]
    assert "-c .ci/constraints.txt" in test_command


def test_every_pin_is_exact():
    pins = [ln for ln in (ROOT / ".ci" / "constraints.txt").read_text().splitlines() if ln and not ln.startswith("#")]
    assert pins and all(re.fullmatch(r"[A-Za-z0-9_.\-]+==[0-9][A-Za-z0-9.+\-]*", p) for p in pins), pins
