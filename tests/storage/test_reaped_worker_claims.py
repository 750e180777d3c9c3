"""A worker a reaper removed while it lived (its heartbeat came late) and
that then claims before its next beat must stay visible to reapers: else,
dying before that beat, it would leave a lease no reaper ever sees."""

from __future__ import annotations

from taskq.worker.scheduler import Reaper
from tests.storage.test_leases import T0, beat, claim, reap


def test_a_reaped_worker_that_claims_again_is_listed_and_its_lease_reaped(app):
    app.task(name="token")(lambda: None)
    first, second = app.enqueue_call("token", (), {}), app.enqueue_call("token", (), {})
    beat(app.backend, "w1", T0)
    (held,) = claim(app, "w1", T0)
    assert held.id == first.id
    assert reap(app, "w1", T0 + 20_000) == {first.id: "requeued"}  # taken for dead
    assert app.backend.workers() == []
    claimed = claim(app, "w1", T0 + 20_100)  # it was alive: it claims again, then dies before beating
    assert {c.id for c in claimed} == {first.id}
    assert [w for w, _ in app.backend.workers()] == ["w1"]
    reaper = Reaper(app)
    for t in range(T0 + 20_200, T0 + 40_000, 1000):
        reaper.tick(t)
    assert app.job(first.id).state.value == "queued" and app.job(first.id).info().lost_count == 2
    assert second.state.value == "queued"
