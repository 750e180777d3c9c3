"""The code in docs/ runs: each page's Python blocks either run as a
program (against the test server, with a worker where they need one) or
are checked to be taken verbatim from code that the tests run."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

DOCS = ROOT / "docs"


def blocks(page: str, lang: str = "python") -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", (DOCS / page).read_text(), re.S)


def expected_output(page: str) -> str:
    """The block that follows "prints" on the page."""
    return re.findall(r"prints\n\n```\n(.*?)```", (DOCS / page).read_text(), re.S)[0]


def run_page(page: str, env: dict[str, str], tmp_path: Path) -> str:
    module = tmp_path / f"doc_{Path(page).stem}.py"
    module.write_text("\n".join(blocks(page)))
    proc = subprocess.run([sys.executable, str(module)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_the_asyncio_page_runs_against_a_worker(worker_env, start_worker, tmp_path):
    (tmp_path / "doc_asyncio.py").write_text("\n".join(blocks("asyncio.md")))
    env = {**worker_env, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(ROOT)])}
    start_worker("doc_asyncio:app", env=env)
    assert run_page("asyncio.md", env, tmp_path) == expected_output("asyncio.md")


def test_the_opentelemetry_page_runs(worker_env, tmp_path):
    pytest.importorskip("opentelemetry.sdk")
    assert run_page("opentelemetry.md", worker_env, tmp_path) == expected_output("opentelemetry.md")


@pytest.mark.parametrize("page, sources", [
    ("fastapi.md", ["examples/fastapi_app.py"]),
    ("django.md", ["tests/contrib/django_project/project/settings.py", "tests/contrib/django_project/shop/tasks.py",
                   "tests/contrib/django_project/drive.py"]),
])
def test_blocks_are_the_tested_codes_own(page, sources):
    code = "\n".join((ROOT / s).read_text() for s in sources)
    for block in blocks(page):
        assert block in code, f"{page}: this block is not in {', '.join(sources)}:\n{block}"
