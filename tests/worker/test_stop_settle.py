"""Outcomes still to be recorded when a consumer is asked to stop."""

from __future__ import annotations

from taskq import JobState
from taskq.errors import BrokerUnavailable
from tests.apps.control import consumer


def test_an_outcome_whose_settle_fails_during_stop_is_sent_again_not_dropped(make_app, monkeypatch):
    app = make_app()
    ran = []

    @app.task(name="once")
    def once() -> None:
        ran.append(True)

    c = consumer(app)
    job = once.delay()
    real = app.backend.settle_claim
    failures = {"left": 2}  # the settle after the run, then the first one while stopping

    def flaky(*args, **kwargs):
        if args[2] and failures["left"]:  # a call carrying outcomes
            failures["left"] -= 1
            raise BrokerUnavailable("connection lost")
        return real(*args, **kwargs)

    monkeypatch.setattr(app.backend, "settle_claim", flaky)
    monkeypatch.setattr("taskq.worker.child.time.sleep", lambda s: None)  # the backoff
    for _ in range(50):  # claim, then run (its settle fails: the outcome stays pending)
        try:
            c.step()
        except BrokerUnavailable:
            break
    assert ran == [True] and [o.id for o in c.pending] == [job.id]
    c.stopping.set()  # SIGTERM while the server is briefly unreachable
    c.run()
    assert failures["left"] == 0
    assert job.state == JobState.SUCCEEDED  # not handed back to run a second time
