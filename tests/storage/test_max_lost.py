"""``max_lost``: a job whose worker is lost goes back to the head of its
queue with its attempt refunded, up to ``max_lost`` times; past that a loss
uses an attempt. Storage level, time passed in."""

from __future__ import annotations

import pytest

from taskq import ConfigurationError, JobState, TaskQ
from tests.storage.test_leases import T0, claim, reap


def losses(app: TaskQ, job_id: str, times: int) -> list[str]:
    """Claim the job and lose its worker ``times`` times; the outcomes."""
    out = []
    for i in range(times):
        (claimed,) = claim(app, f"w{i}", T0 + i)
        assert claimed.id == job_id
        result = reap(app, f"w{i}", T0 + i)
        assert result is not None
        out.append(result[job_id])
    return out


def test_a_lost_job_is_requeued_at_the_head_without_using_an_attempt(app):
    @app.task(retry=0)
    def work() -> None: ...

    app.backend.register_tasks({n: app.options_for(n).limits for n in app.tasks})
    job, later = work.delay(), work.delay()
    assert losses(app, job.id, 2) == ["requeued", "requeued"]
    info = job.info()
    assert (info.state, info.attempts, info.lost_count) == (JobState.QUEUED, 0, 2)
    assert [e["type"] for e in info.errors] == ["WorkerLost", "WorkerLost"]
    assert app.backend.ready_ids("default", 10) == [job.id, later.id]  # at the head, before `later`
    assert app.backend.task_counters()[f"{work.name}|lost"] == 2
    # the third loss is past max_lost=2: with retry=0 it fails
    assert losses(app, job.id, 1) == ["failed"]
    assert (job.info().state, job.info().lost_count) == (JobState.FAILED, 3)


def test_max_lost_comes_from_settings_and_per_call(make_app):
    app = make_app(settings={"task_flags": {"t.flagged": {"max_lost": 0}}})

    @app.task(name="t.flagged", retry=0)
    def flagged() -> None: ...

    @app.task(name="t.plain", retry=0, max_lost=5)
    def plain() -> None: ...

    app.backend.register_tasks({n: app.options_for(n).limits for n in app.tasks})
    assert losses(app, flagged.delay().id, 1) == ["failed"]  # settings win over the default
    per_call = plain.apply_async(max_lost=1)
    assert losses(app, per_call.id, 2) == ["requeued", "failed"]  # the call wins over the decorator


def test_past_max_lost_a_loss_retries_while_attempts_remain(app):
    @app.task(name="t.retried", retry=1, retry_interval=0, max_lost=1)
    def retried() -> None: ...

    app.backend.register_tasks({n: app.options_for(n).limits for n in app.tasks})
    job = retried.delay()
    assert losses(app, job.id, 3) == ["requeued", "queued", "failed"]
    info = job.info()
    assert (info.attempts, info.lost_count, len(info.errors)) == (2, 3, 3)


def test_max_lost_must_be_a_count(app):
    with pytest.raises(ConfigurationError, match="max_lost must be an int >= 0"):
        app.task(max_lost=-1)(lambda: None)
