"""A custom job id used again once its earlier job is gone."""

from __future__ import annotations

import pytest

from taskq import JobState
from taskq.errors import BrokerUnavailable, ResultTimeout
from tests.conftest import drain, wait_for


def test_a_reused_id_does_not_answer_result_with_the_outcome_of_its_expired_predecessor(make_app):
    app = make_app(failed_ttl=0.5)

    @app.task(name="flaky", tombstone=True)
    def flaky(fail: bool) -> str:
        if fail:
            raise ValueError("first run")
        return "second run"

    first = flaky.apply_async((True,), job_id="report-1")
    drain(app, [first])
    assert first.state == JobState.FAILED
    # its hash expires (failed_ttl) while its kept outcome (tombstone_ttl) does not
    wait_for(lambda: not app.backend.job_hash("report-1"), 10, what="the failed job's expiry")

    again = flaky.apply_async((False,), job_id="report-1")
    assert again.created and again.state == JobState.QUEUED
    with pytest.raises(ResultTimeout):
        again.result(timeout=0.3)  # it has not run: nothing to answer yet
    drain(app, [again])
    assert again.result(timeout=5) == "second run"


def lose_first_enqueue_reply(app, monkeypatch) -> list[int]:
    """The next enqueue script call runs on the server, then its reply is
    lost (as when the connection drops right after the server ran it)."""
    from taskq.errors import BrokerUnavailable

    real = app.backend.run
    lost: list[int] = []

    def run(name, *args, **kwargs):
        reply = real(name, *args, **kwargs)
        if name == "enqueue" and not lost:
            lost.append(1)
            raise BrokerUnavailable("connection lost before the reply (test)")
        return reply

    monkeypatch.setattr(app.backend, "run", run)
    return lost


def test_a_custom_id_created_by_a_send_whose_reply_was_lost_reports_created(make_app, monkeypatch):
    """The resend finds the job its own first send created: ``created`` is
    True; an enqueue of that id by any later call is still False."""
    app = make_app()
    task = app.task(name="noop")(lambda *a: None)
    lost = lose_first_enqueue_reply(app, monkeypatch)
    job = task.apply_async((1,), job_id="order-7")
    assert lost == [1] and job.created and job.state == JobState.QUEUED
    again = task.apply_async((1,), job_id="order-7")
    assert not again.created and again.id == "order-7"
    assert app.backend.ready_ids("default", 10) == ["order-7"]



@pytest.mark.parametrize("how", ["generated id", "custom id"])
def test_a_unique_job_created_by_a_send_whose_reply_was_lost_reports_created(make_app, monkeypatch, how):
    """The resend of a unique job finds the job its own first send created
    (the unique key names it): ``created`` is True. Another call with the
    same key is still told False."""
    app = make_app()
    task = app.task(name="once", unique=True)(lambda *a: None)
    lost = lose_first_enqueue_reply(app, monkeypatch)
    if how == "generated id":
        job = task.delay(1)
    else:
        job = task.apply_async((1,), job_id="invoice-9")
    assert lost == [1] and job.created and job.state == JobState.QUEUED
    again = task.delay(1)
    assert (again.id, again.created) == (job.id, False)
    assert app.backend.ready_ids("default", 10) == [job.id]


def test_a_finished_job_found_by_a_late_resend_still_counts_as_created(make_app, monkeypatch):
    """The job its first send created ran and finished before the resend
    came: it is still there (its TTL), so the resend reports it created and
    creates nothing."""
    app = make_app()
    task = app.task(name="noop")(lambda *a: None)
    real = app.backend.run
    done: list[int] = []

    def run(name, *args, **kwargs):
        reply = real(name, *args, **kwargs)
        if name == "enqueue" and not done:
            done.append(1)
            drain(app, [app.job("order-8")])  # it runs and finishes meanwhile
            raise BrokerUnavailable("connection lost before the reply (test)")
        return reply

    monkeypatch.setattr(app.backend, "run", run)
    job = task.apply_async((1,), job_id="order-8")
    assert job.created and job.state == JobState.SUCCEEDED
