"""A custom job id used again once its earlier job is gone."""

from __future__ import annotations

import pytest

from taskq import JobState
from taskq.errors import ResultTimeout
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
