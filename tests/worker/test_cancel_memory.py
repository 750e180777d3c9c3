"""What a consumer remembers of cancel requests once the job they named is done."""

from __future__ import annotations

from taskq import JobState, current_job
from tests.apps.control import consumer, run_until, stop


def test_a_requeued_job_is_not_cancelled_by_a_request_withdrawn_with_the_requeue(make_app):
    app = make_app()
    c = consumer(app)
    runs = []

    @app.task(name="stubborn")
    def stubborn() -> None:
        runs.append(current_job().id)
        if len(runs) == 1:
            app.job(current_job().id).cancel()
            c.heartbeat.beat()  # the heartbeat thread delivers the request mid-run
            assert current_job().cancel_requested
            raise ValueError("ignored the cancel and failed")

    app.backend.register_tasks({"stubborn": 1})
    job = stubborn.delay()
    run_until(c, lambda: job.state.finished)
    assert job.state == JobState.FAILED
    job.requeue()  # an explicit requeue withdraws the cancel request
    assert not job.info().cancel_requested
    run_until(c, lambda: job.state.finished)
    stop(c)
    assert job.state == JobState.SUCCEEDED, job.info().errors[-1]
    assert len(runs) == 2
