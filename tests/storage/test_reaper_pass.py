"""The reapers' shared watch (reaper_pass.lua): a dead worker is found within
heartbeat_timeout while any reaper passes, however short each reaper lives,
and never after a silence no reaper watched.

Time is an input: every pass is given its ``now_ms``.
"""

from __future__ import annotations

from taskq import JobState
from taskq.worker.scheduler import Reaper
from tests.apps.control import build
from tests.storage.test_scheduling import leased_to_w1


def another_process(capp) -> Reaper:
    """A reaper of the same namespace with a client of its own."""
    return Reaper(build(capp.settings.redis_url, capp.settings.namespace))


def relay(capp, start: int, end: int, every: int, life: int) -> int | None:
    """Reapers that each live ``life`` ms, a new one starting as the last
    goes, pass every ``every`` ms from ``start`` to ``end``: the time of the
    pass that reaped w1, or None."""
    reaper = Reaper(capp)
    born = start
    try:
        for t in range(start, end + 1, every):
            if t - born >= life:
                if reaper.app is not capp:
                    reaper.app.close()
                reaper, born = another_process(capp), t
            if reaper.tick(t) == ["w1"]:
                return t
        return None
    finally:
        if reaper.app is not capp:
            reaper.app.close()


def test_reapers_that_each_live_less_than_the_timeout_still_find_a_dead_worker(capp):
    """Each reaper lives 2.5 s of a 10 s timeout. Each watching on its own,
    none would ever see a whole timeout of silence: the job stayed leased to
    the dead worker for as long as the churn lasted."""
    job, hb = leased_to_w1(capp)
    timeout = Reaper(capp).timeout_ms
    assert timeout > 2_500 * 3
    reaped_at = relay(capp, hb, hb + 3 * timeout, every=500, life=2_500)
    assert reaped_at == hb + timeout  # the first pass a whole timeout after its last beat
    assert job.state == JobState.QUEUED and job.info().errors[-1]["type"] == "WorkerLost"


def test_a_reaper_that_starts_carries_on_the_watch_of_one_that_stopped(capp):
    job, hb = leased_to_w1(capp)
    first = Reaper(capp)
    for t in range(hb, hb + 4_001, 1_000):
        assert first.tick(t) == []
    second = another_process(capp)  # within the gap limit of the first one's last pass
    for t in range(hb + 5_000, hb + first.timeout_ms, 1_000):
        assert second.tick(t) == []
    assert job.state == JobState.ACTIVE
    assert second.tick(hb + first.timeout_ms) == ["w1"]
    second.app.close()


def test_a_gap_in_every_pass_counts_as_half_a_timeout_only(capp):
    """Nothing of the namespace passed for longer than half the timeout (a
    server pause, every process gone): that silence counts as half a timeout
    of watch, so a worker cut off by the gap has the other half to beat."""
    job, hb = leased_to_w1(capp)
    reaper = Reaper(capp)
    timeout, gap = reaper.timeout_ms, reaper.max_gap_ms
    assert gap == timeout // 2
    assert reaper.tick(hb) == []
    resumed = hb + 10 * timeout  # a long pause: the heartbeat is ten timeouts old
    t = resumed
    while t < resumed + timeout - gap:
        assert reaper.tick(t) == [], t
        t += 1_000
    assert job.state == JobState.ACTIVE
    assert reaper.tick(resumed + timeout - gap) == ["w1"]


def test_a_worker_that_beats_again_after_a_pause_is_never_named(capp):
    b = capp.backend
    job, hb = leased_to_w1(capp)
    reaper = Reaper(capp)
    assert reaper.tick(hb) == []
    resumed = hb + 60_000
    for t in range(resumed, resumed + 3 * reaper.timeout_ms, 500):
        if (t - resumed) % 2_000 == 1_500:  # its first beat 1.5 s after the pause, then every 2 s
            b.run("heartbeat", t, "w1", 60_000)
        assert reaper.tick(t) == [], t
    assert job.state == JobState.ACTIVE


def test_after_a_gap_a_dead_worker_is_found_half_a_timeout_later(capp):
    """Every process of the namespace down for 0.7 timeout: the watch has half
    a timeout when passes resume, so the dead worker is found half a timeout
    after the gap ended, not a whole one."""
    job, hb = leased_to_w1(capp)
    reaper = Reaper(capp)
    timeout, gap = reaper.timeout_ms, reaper.max_gap_ms
    resumed = hb + 1_000 + timeout * 7 // 10
    for t in (hb, hb + 1_000, resumed):
        assert reaper.tick(t) == []
    t = resumed
    while t + 500 < resumed + timeout - gap:
        t += 500
        assert reaper.tick(t) == [], t
    assert reaper.tick(resumed + timeout - gap) == ["w1"]


def test_a_beat_written_just_after_the_passes_now_is_not_from_the_future(capp):
    """A reaper given a now a few ms old (read at the start of its
    scheduler's loop) met a beat written since: it took it for one from
    before the server's clock went back and reaped the live worker."""
    b = capp.backend
    job, hb = leased_to_w1(capp)
    reaper = Reaper(capp)
    for t in range(hb - reaper.timeout_ms, hb, 1_000):
        assert reaper.tick(t) == []
    b.run("heartbeat", hb + 1_005, "w1", 60_000)
    assert reaper.tick(hb + 1_000) == []
    assert reaper.tick(hb + 1_010) == []
    assert job.state == JobState.ACTIVE


def test_heartbeats_carry_the_watch_while_no_reaper_runs(capp):
    """Workers run without a scheduler for a while (their supervisors gone or
    --no-scheduler): the beats of the live ones watch the dead one, so the
    first reaper that starts reaps it at its first pass."""
    b = capp.backend
    job, hb = leased_to_w1(capp)
    first = Reaper(capp)
    gap = first.max_gap_ms
    assert first.tick(hb) == []  # a watch begins; this reaper's process then ends
    end = hb + 2 * first.timeout_ms
    for t in range(hb + 1_000, end, 1_000):
        b.run("heartbeat", t, "w2", 60_000, gap)  # w2 is alive and beating
    assert another_process(capp).tick(end) == ["w1"]
    assert job.state == JobState.QUEUED


def test_a_heartbeat_after_a_pause_does_not_hide_the_pause(capp):
    """The first command after a pause may be a beat, not a reaper's pass:
    it judges the gap the same way."""
    b = capp.backend
    job, hb = leased_to_w1(capp)
    reaper = Reaper(capp)
    assert reaper.tick(hb) == []
    resumed = hb + 60_000
    b.run("heartbeat", resumed, "w2", 60_000, reaper.max_gap_ms)
    assert reaper.tick(resumed + 100) == []
    assert job.state == JobState.ACTIVE


def test_a_gap_no_longer_than_the_limit_keeps_the_watch(capp):
    job, hb = leased_to_w1(capp)
    reaper = Reaper(capp)
    t = hb
    while t < hb + reaper.timeout_ms:
        assert reaper.tick(t) == []
        t += reaper.max_gap_ms
    assert reaper.tick(hb + reaper.timeout_ms) == ["w1"]


def test_a_worker_that_beats_is_never_named(capp):
    b = capp.backend
    job, hb = leased_to_w1(capp)
    reaper = Reaper(capp)
    end = hb + 3 * reaper.timeout_ms
    for t in range(hb, end, 1_000):
        if (t - hb) % 3_000 == 0:
            b.run("heartbeat", t, "w1", 60_000)  # a beat at that time
            last_beat = t
        assert reaper.tick(t) == []
    assert job.state == JobState.ACTIVE
    for t in range(end, last_beat + reaper.timeout_ms, 1_000):  # it stopped beating
        assert reaper.tick(t) == []
    assert reaper.tick(last_beat + reaper.timeout_ms) == ["w1"]


def test_the_watch_is_the_namespaces_own(capp, make_app):
    """A reaper of another namespace passing does not keep this one's watch."""
    job, hb = leased_to_w1(capp)
    here, other = Reaper(capp), Reaper(make_app(namespace=capp.settings.namespace + "-other"))
    assert here.tick(hb) == []
    for t in range(hb + 1_000, hb + here.timeout_ms + 1, 1_000):
        other.tick(t)
    assert here.tick(hb + here.timeout_ms) == []  # this namespace's watch had a gap
    other.app.backend.delete_namespace()
