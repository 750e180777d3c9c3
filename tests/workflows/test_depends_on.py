"""``apply_async(depends_on=...)``: a job waits until its dependencies succeeded."""

from __future__ import annotations

from typing import Any

import pytest

from taskq import JobNotFound, JobState, TaskQ
from tests.conftest import drain
from tests.workflows import flowapp


@pytest.fixture
def fapp(redis_url: str, namespace: str) -> Any:
    app = flowapp.build(redis_url, namespace)
    yield app
    app.backend.delete_namespace()
    app.close()


def test_a_dependent_job_waits_then_runs_once_its_dependencies_succeeded(fapp: TaskQ) -> None:
    add = fapp.tasks["add"]
    a, b = add.delay(1, 2), add.delay(3, 4)
    c = add.apply_async((5, 6), depends_on=[a, b.id], tombstone=True)
    info = fapp.job(c.id).info()
    assert info.state == JobState.WAITING and info.waiting_for == "dependencies"
    assert sorted(info.dependencies) == sorted([a.id, b.id]) and info.dependency_count == 2
    assert c.id in [i.id for i in fapp.control.list_jobs("waiting")]
    drain(fapp, [a])
    assert fapp.job(c.id).info().dependencies == [b.id]
    drain(fapp, [b, c])
    assert c.result(timeout=1) == 11


def test_a_failed_dependency_cancels_the_job_naming_it(fapp: TaskQ) -> None:
    add, boom = fapp.tasks["add"], fapp.tasks["boom"]
    bad = boom.delay()
    c = add.apply_async((1, 1), depends_on=[bad])
    drain(fapp, [bad, c])
    info = fapp.job(c.id).info()
    assert info.state == JobState.CANCELLED and info.cause == bad.id
    assert bad.id in info.errors[-1]["message"] and "nope" in info.errors[-1]["message"]


def test_on_dependency_failure_run_runs_it_anyway(fapp: TaskQ) -> None:
    add, boom = fapp.tasks["add"], fapp.tasks["boom"]
    bad = boom.delay()
    c = add.apply_async((1, 1), depends_on=[bad], on_dependency_failure="run", tombstone=True)
    drain(fapp, [bad, c])
    assert c.result(timeout=1) == 2


def test_a_dependency_already_finished_counts_at_once(fapp: TaskQ) -> None:
    add, boom = fapp.tasks["add"], fapp.tasks["boom"]
    done, bad = add.delay(1, 1), boom.delay()
    drain(fapp, [done, bad])
    ready = add.apply_async((2, 2), depends_on=[done])
    assert ready.state == JobState.QUEUED
    dead = add.apply_async((2, 2), depends_on=[bad])
    assert dead.state == JobState.CANCELLED


def test_an_unknown_dependency_raises_and_enqueues_nothing(fapp: TaskQ) -> None:
    add = fapp.tasks["add"]
    real = add.delay(1, 1)
    before = set(fapp.backend.client.keys(fapp.backend.prefix.replace("{", "\\{").replace("}", "\\}") + "*"))
    with pytest.raises(JobNotFound, match="no-such-job"):
        add.apply_async((1, 1), depends_on=[real, "no-such-job"], job_id="dependent")
    after = set(fapp.backend.client.keys(fapp.backend.prefix.replace("{", "\\{").replace("}", "\\}") + "*"))
    assert after == before
    assert fapp.backend.job_state("dependent") is None


def test_a_resource_waiter_and_a_dependency_waiter_are_told_apart(fapp: TaskQ) -> None:
    add = fapp.tasks["add"]
    a = add.delay(1, 1)
    c = add.apply_async((1, 1), depends_on=[a])
    assert fapp.job(c.id).info().waiting_for == "dependencies"
    assert fapp.job(a.id).info().parents == [c.id]
    assert fapp.job(c.id).cancel() == "cancelled"
    drain(fapp, [a])  # its finish finds no one waiting any more
    assert fapp.job(c.id).state == JobState.CANCELLED


def test_bad_policy_is_refused(fapp: TaskQ) -> None:
    add = fapp.tasks["add"]
    a = add.delay(1, 1)
    with pytest.raises(ValueError, match="on_dependency_failure"):
        add.apply_async((1, 1), depends_on=[a], on_dependency_failure="maybe")
