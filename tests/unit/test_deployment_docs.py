"""The Python blocks of docs/deployment-scaling.md run as they are (they
build apps for a Sentinel group and a cluster: nothing connects)."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment-scaling.md"


def test_every_python_block_of_the_deployment_page_runs():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) >= 2
    for block in blocks:
        namespace: dict[str, object] = {}
        exec(compile(block, str(DOC), "exec"), namespace)
        for app in [v for v in namespace.values() if type(v).__name__ == "TaskQ"]:
            app.close()  # type: ignore[attr-defined]
