"""What a new user meets first: one namespace per app, results that say
when there is none, Celery/RQ aliases, and cron strings read one way."""

from __future__ import annotations

import datetime as dt
import secrets
import time

import pytest

from taskq import ConfigurationError, JobContext, JobState, NoResult, TaskQ
from taskq.cron import Periodic
from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig
from tests.conftest import drain


@pytest.fixture
def named(redis_url):
    """Apps named (so namespaced) uniquely, deleted after the test."""
    apps: list[TaskQ] = []

    def factory(name: str, **kw) -> TaskQ:
        app = TaskQ(f"{name}{secrets.token_hex(3)}", redis_url, **kw)
        apps.append(app)
        return app

    yield factory
    for app in apps:
        app.backend.delete_namespace()
        app.close()


def test_the_namespace_defaults_to_the_app_name(named, monkeypatch):
    shop = named("shop")
    assert shop.settings.namespace == shop.name
    assert named("shop", namespace="taskq").settings.namespace == "taskq"  # the old default, kept by asking
    monkeypatch.setenv("TASKQ_NAMESPACE", "fromenv")
    assert named("shop").settings.namespace == "fromenv"


def test_an_app_name_that_cannot_be_a_namespace_asks_for_one(redis_url):
    with pytest.raises(ConfigurationError, match=r"defaults to the app's name: pass namespace="):
        TaskQ("my shop", redis_url)
    assert TaskQ("my shop", redis_url, namespace="shop").settings.namespace == "shop"


def steps(app: TaskQ, n: int) -> None:
    """``n`` claim steps of an in-process consumer of ``app``."""
    c = Consumer(app, WorkerConfig(concurrency=1, block_timeout=0.01, prefetch=10), "w-" + app.name)
    c.heartbeat.beat()
    for _ in range(n):
        c.step()
    c.stopping.set()
    c.shutdown()


def test_two_apps_on_one_server_never_see_each_others_jobs(named):
    shop, mine = named("shop"), named("mine")

    @shop.task(name="shop.hello", tombstone=True)
    def hello() -> str:
        return "hi"

    @mine.task(name="mine.other")
    def other() -> None: ...

    job = hello.delay()
    steps(mine, 20)
    assert job.state == JobState.QUEUED  # mine's worker did not take (and fail) it
    drain(shop, [job])
    assert job.result(timeout=5) == "hi"


def test_result_of_a_task_that_keeps_none_says_how_to_keep_it(app):
    @app.task
    def quiet() -> int:
        return 1

    @app.task(tombstone=True)
    def kept() -> None:
        return None

    a, b = quiet.delay(), kept.delay()
    drain(app, [a, b])
    with pytest.raises(NoResult, match=r"tombstone=True"):
        a.result(timeout=5)
    assert a.wait(timeout=5) == JobState.SUCCEEDED
    assert b.result(timeout=5) is None  # a kept None is a value
    assert b.get(timeout=5) is None and b.get_status() == JobState.SUCCEEDED


def test_countdown_is_delay_under_celerys_name(app):
    @app.task
    def later() -> None: ...

    before = time.time()
    job = later.apply_async(countdown=30)
    info = job.info()
    assert info.state == JobState.SCHEDULED and 29 <= info.due_at - before <= 31
    with pytest.raises(ConfigurationError, match="not both"):
        later.apply_async(countdown=1, delay=1)


def test_bind_passes_the_running_job_first(app):
    @app.task(bind=True, tombstone=True)
    def whoami(job: JobContext, x: int) -> list:
        return [job.id, job.attempt, x]

    job = whoami.delay(7)
    drain(app, [job])
    assert job.result(timeout=5) == [job.id, 1, 7]
    with pytest.raises(ConfigurationError, match="bind must be True or False"):
        app.task(bind="yes")(lambda: None)


def test_six_field_cron_reads_seconds_last_and_refuses_seconds_first():
    every_10s = Periodic.build(cron="* * * * * */10", every=None, tz=None, catch_up="one")
    t0 = int(dt.datetime(2030, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)
    assert every_10s.next_ticks(t0) == [t0 + 10_000, t0 + 20_000, t0 + 30_000]
    with pytest.raises(ConfigurationError, match=r"seconds field is the last.*'\* \* \* \* \* \*/10'"):
        Periodic.build(cron="*/10 * * * * *", every=None, tz=None, catch_up="one")
    every_second = Periodic.build(cron="* * * * * *", every=None, tz=None, catch_up="one")  # unambiguous
    assert every_second.next_ticks(t0, 2) == [t0 + 1000, t0 + 2000]
    yearly = Periodic.build(cron="0 0 1 1 * 0 2031", every=None, tz=None, catch_up="one")  # 7th: the year
    assert yearly.next_ticks(t0) == [int(dt.datetime(2031, 1, 1, tzinfo=dt.UTC).timestamp() * 1000)]
