"""taskq as Django 6's tasks backend, in a real Django project (SQLite,
tests/contrib/django_project) with a real ``manage.py taskq_worker``.

Django 6 needs Python >= 3.12. When the suite runs on an older one, these
tests build an environment of their own with a newer Python found on the
machine (``TASKQ_DJANGO_PYTHON``, ``python3.13``/``python3.12`` on PATH,
or a pyenv version), cached in ``.venv-django``. Under ``CI=true`` a
missing Python >= 3.12 fails the tests; elsewhere it skips them.
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, wait_for

PROJECT = Path(__file__).resolve().parent / "django_project"
REQUIREMENTS = Path(__file__).resolve().parent / "requirements-django.txt"
VENV = ROOT / ".venv-django"


def _version(python: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, timeout=30).stdout.split()
        return (int(out[0]), int(out[1])) if len(out) == 2 else None
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def find_python() -> str | None:
    """A Python >= 3.12: this one, TASKQ_DJANGO_PYTHON, PATH, or pyenv's."""
    if sys.version_info >= (3, 12):
        return sys.executable
    candidates = [os.environ.get("TASKQ_DJANGO_PYTHON", ""), shutil.which("python3.13") or "",
                  shutil.which("python3.12") or "",
                  *sorted(glob.glob(os.path.expanduser("~/.pyenv/versions/3.1[2-9]*/bin/python")), reverse=True)]
    for python in filter(None, candidates):
        version = _version(python)
        if version and version >= (3, 12):
            return python
    return None


def django_python() -> str:
    """The interpreter of an environment with Django 6 and taskq's
    dependencies (taskq itself comes from the source tree, on PYTHONPATH)."""
    base = find_python()
    if base is None:
        message = ("the Django tests need Python >= 3.12 (Django 6 does not run on "
                   f"{sys.version_info.major}.{sys.version_info.minor}): none found as TASKQ_DJANGO_PYTHON, "
                   "python3.13 or python3.12 on PATH, or ~/.pyenv/versions/3.12+")
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    if base == sys.executable:
        pytest.importorskip("django", minversion="6.0")
        return base
    python = VENV / "bin" / "python"
    stamp = VENV / "taskq-requirements.txt"
    wanted = f"{base}\n{REQUIREMENTS.read_text()}"
    if not (python.exists() and stamp.exists() and stamp.read_text() == wanted):
        shutil.rmtree(VENV, ignore_errors=True)
        subprocess.run([base, "-m", "venv", str(VENV)], check=True, timeout=120)
        pip = subprocess.run([str(python), "-m", "pip", "install", "-q", "-r", str(REQUIREMENTS)],
                             capture_output=True, text=True, timeout=600)
        if pip.returncode:
            pytest.fail(f"installing {REQUIREMENTS.name} into {VENV} failed:\n{pip.stdout}\n{pip.stderr}",
                        pytrace=False)
        stamp.write_text(wanted)
    return str(python)


@pytest.fixture(scope="module")
def python() -> str:
    return django_python()


@pytest.fixture
def project_env(worker_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    env = {**worker_env, "DJANGO_DB": str(tmp_path / "db.sqlite3"),
           "PYTHONPATH": os.pathsep.join([str(PROJECT), str(ROOT)]), "DJANGO_SETTINGS_MODULE": "project.settings"}
    env.pop("VIRTUAL_ENV", None)
    return env


def run(python: str, env: dict[str, str], *args: str) -> str:
    proc = subprocess.run([python, *args], cwd=PROJECT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, f"{args} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture
def project(python: str, project_env: dict[str, str], tmp_path: Path) -> Iterator[Any]:
    """Migrated, with ``manage.py taskq_worker`` running; yields ``drive(scenario)``."""
    run(python, project_env, "manage.py", "migrate", "-v", "0")
    log = open(tmp_path / "worker.log", "wb")
    worker = subprocess.Popen([python, "manage.py", "taskq_worker", "-c", "1"], cwd=PROJECT, env=project_env,
                              stdout=log, stderr=subprocess.STDOUT)
    probe = run(python, project_env, "-c", "import redis, os; "
                "print(redis.Redis.from_url(os.environ['TASKQ_REDIS_URL']).ping())")
    assert probe.strip() == "True"

    def registered() -> bool:
        assert worker.poll() is None, (tmp_path / "worker.log").read_text()
        out = run(python, project_env, "-c", "import redis, os; r = redis.Redis.from_url(os.environ['TASKQ_REDIS_URL']);"
                  " print(r.zcard('{' + os.environ['TASKQ_NAMESPACE'] + '}:workers'))")
        return int(out) > 0

    try:
        wait_for(registered, 60, interval=0.2, what="manage.py taskq_worker registration")
        yield lambda scenario: json.loads(run(python, project_env, "drive.py", scenario).strip().splitlines()[-1])
    finally:
        worker.terminate()
        worker.wait(30)
        log.close()


def test_enqueue_and_get_result_through_a_worker(project):
    out = project("success")
    queued, done = out["enqueued"], out["done"]
    assert queued["status"] == "READY" and queued["enqueued"] and queued["backend"] == "default"
    assert done["id"] == queued["id"] == out["via_task"]
    assert done["status"] == "SUCCESSFUL" and done["value"] == 5 and done["attempts"] == 1
    assert (done["args"], done["kwargs"], done["name"]) == ([2], {"b": 3}, "add")
    assert done["started"] and done["finished"] and done["errors"] == []


def test_a_failing_task_reports_its_exception(project):
    out = project("failure")
    done = out["done"]
    assert done["status"] == "FAILED" and done["priority"] == 5
    assert done["errors"] == [["builtins.ValueError", "ValueError: no luck"]]
    assert out["exception_class"] == "ValueError" and out["return_value_raises"] == "Task failed"


def test_priority_queue_name_and_run_after_are_the_jobs_own(project):
    out = project("options")
    r = out["result"]
    assert (r["priority"], r["queue"], r["status"]) == (42, "low", "READY")
    assert out["taskq_state"] == "scheduled" and out["run_after_delta"] < 0.01
    assert out["invalid"] == "Queue 'nowhere' is not valid for backend."


def test_context_and_async_tasks_and_the_async_api(project):
    out = project("context_and_async")
    assert out["context"]["status"] == "SUCCESSFUL"
    assert out["context"]["value"] == {"id": out["expected_id"], "attempt": 1}
    assert out["async"]["status"] == "SUCCESSFUL" and out["async"]["value"] == 42


def test_enqueue_on_commit_waits_for_the_commit_and_drops_on_rollback(project):
    out = project("on_commit")
    assert out["inside_transaction"] == []  # nothing enqueued before the commit
    assert out["done"]["status"] == "SUCCESSFUL" and out["done"]["value"] is True and out["paid"] is True
    assert out["after_rollback"] == [out["job"]] and out["orders"] == 1


def test_an_unknown_result_id_raises_task_result_does_not_exist(project):
    assert project("missing") == {"raised": "TaskResultDoesNotExist"}
