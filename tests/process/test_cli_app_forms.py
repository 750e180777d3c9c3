"""Every command names its app the same three ways: a positional APP,
``-A/--app``, or ``$TASKQ_APP``."""

from __future__ import annotations

import json

import click
import pytest

from taskq_cli.main import main
from tests.apps.basic import build
from tests.conftest import drain
from tests.process.test_cli_errors import APP, taskq


def commands(group: click.Group, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], click.Command]]:
    out = []
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out += commands(cmd, (*prefix, name))
        else:
            out.append(((*prefix, name), cmd))
    return out


def test_every_command_that_takes_an_app_takes_it_positionally_and_with_dash_a():
    taking = {path: {p.name for p in cmd.params} for path, cmd in commands(main)
              if {"app_arg", "app_opt"} & {p.name for p in cmd.params}}
    assert {("worker",), ("jobs",), ("job", "show"), ("failed", "purge"), ("purge",), ("status",)} <= set(taking)
    for path, names in taking.items():
        assert {"app_arg", "app_opt"} <= names, path


@pytest.fixture
def failed_job(redis_url, namespace):
    app = build(redis_url, namespace)
    job = app.tasks["fail"].delay()
    drain(app, [job])
    yield job
    app.backend.delete_namespace()
    app.close()


@pytest.mark.parametrize("form", ["positional", "-A", "env"])
def test_jobs_job_show_and_failed_list_take_the_app_every_way(worker_env, failed_job, form):
    env = dict(worker_env)

    def run(*args: str):
        if form == "positional":
            argv = [*args, APP]
        elif form == "-A":
            argv = [*args, "-A", APP]
        else:
            env["TASKQ_APP"] = APP
            argv = list(args)
        proc = taskq(env, *argv)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc.stdout

    assert [j["id"] for j in json.loads(run("jobs", "--state", "failed", "--json"))] == [failed_job.id]
    assert json.loads(run("job", "show", failed_job.id, "--json"))["state"] == "failed"
    assert [j["id"] for j in json.loads(run("failed", "list", "--json"))] == [failed_job.id]


def test_two_different_apps_are_refused(worker_env):
    proc = taskq(worker_env, "jobs", APP, "-A", "other:app")
    assert proc.returncode == 2 and "two apps given" in proc.stderr
