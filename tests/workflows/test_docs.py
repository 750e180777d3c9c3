"""The examples of docs/workflows.md run as written, against a real worker."""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from tests.conftest import ROOT, WorkerProcess

DOC = ROOT / "docs" / "workflows.md"


def test_workflows_page_examples_run(start_worker: Callable[..., WorkerProcess], worker_env: dict[str, str],
                                     tmp_path: Path) -> None:
    tasks, use = re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)[:2]
    (tmp_path / "shop_flows.py").write_text(tasks)  # server and namespace from TASKQ_*
    env = {**worker_env, "PYTHONPATH": f"{tmp_path}:{ROOT}"}
    start_worker("shop_flows:app", env=env)
    out = subprocess.run([sys.executable, "-c", use], cwd=tmp_path, env=env, capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:5] == ["61", "40", "[0, 10, 20]", "['succeeded', 'succeeded', 'succeeded']", "3"]
