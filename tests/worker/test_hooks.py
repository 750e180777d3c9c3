"""``app.on(event, fn)`` hooks run in the worker after the outcome is stored."""

from __future__ import annotations

import pytest

from taskq import ConfigurationError
from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig
from tests.conftest import drain


def test_each_event_fires_with_the_job_id_and_task(app):
    seen = []
    for event in ("job_started", "job_succeeded", "job_failed", "job_retried"):
        app.on(event, lambda data, event=event: seen.append((event, data.id, data.task)))
    app.task(name="ok")(lambda: 1)
    app.task(name="bad", retry=1, retry_interval=0)(lambda: 1 / 0)
    ok, bad = app.tasks["ok"].delay(), app.tasks["bad"].delay()
    drain(app, [ok, bad])
    assert ("job_started", ok.id, "ok") in seen and ("job_succeeded", ok.id, "ok") in seen
    assert [e for e, i, _ in seen if i == bad.id] == ["job_started", "job_retried", "job_started", "job_failed"]


def test_a_hook_that_raises_is_logged_and_the_job_is_kept(app, caplog):
    app.on("job_succeeded", lambda data: 1 / 0)
    app.task(name="ok", tombstone=True)(lambda: "fine")
    job = app.tasks["ok"].delay()
    drain(app, [job])
    assert job.result(timeout=1) == "fine"
    assert "job_succeeded hook" in caplog.text


def test_unknown_event_is_refused(app):
    with pytest.raises(ConfigurationError, match="job_done"):
        app.on("job_done", print)


def test_hooks_run_once_when_the_reply_to_an_outcome_was_lost(app, caplog):
    """The server stored the outcome but its reply was lost: the worker sends
    it again, hears it was recorded already, and runs the hooks once, without
    calling it discarded."""
    from taskq.errors import BrokerUnavailable

    seen = []
    app.on("job_succeeded", lambda data: seen.append(data.id))
    app.task(name="ok")(lambda: 1)
    job = app.tasks["ok"].delay()
    real = app.backend.settle_claim
    lost = []

    def lose_first_reply(worker, count, outcomes, *args, **kwargs):
        reply = real(worker, count, outcomes, *args, **kwargs)
        if outcomes and not lost:
            lost.append(outcomes)
            raise BrokerUnavailable("reply lost (test)")
        return reply

    app.backend.settle_claim = lose_first_reply
    c = Consumer(app, WorkerConfig(concurrency=1, block_timeout=0.05, prefetch=1), "w-lost")
    app.backend.register_tasks({n: app.options_for(n).max_attempts for n in app.tasks})
    c.step()  # claims
    with pytest.raises(BrokerUnavailable):
        c.step()  # runs it; the outcome is stored, its reply lost
    assert job.state.finished and seen == [] and len(c.pending) == 1
    c.step()  # sent again
    assert seen == [job.id] and not c.pending
    assert "discarded" not in caplog.text
    c.stopping.set()
    c.shutdown()
