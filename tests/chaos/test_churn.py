"""Workers killed faster than heartbeat_timeout (the full run:
``python -m tests.chaos.churn``): whole workers, supervisor and children,
SIGKILLed every 2-3 s each while jobs keep coming. Only the reapers of
workers as short-lived return the killed ones' jobs."""

from __future__ import annotations

from tests.chaos.churn import Churn, quantile


def test_jobs_of_killed_workers_come_back_within_the_bound_while_every_worker_lives_shorter_than_the_timeout():
    report = Churn(seconds=45, workers=3, rate=8, quick_rate=40, heartbeat_timeout=5.0, drain_deadline=60).run()
    for line in report.lines():
        print(line)
    assert report.kills >= 30 and max(report.lifetimes) < report.heartbeat_timeout
    assert report.lost == [] and report.stuck == [] and report.never_ran == []
    assert report.states == {"succeeded": report.jobs}
    assert len(report.held) >= 10  # the kills caught jobs running or waiting in their workers
    assert report.unrecovered == []
    # Before, each reaper had to watch a heartbeat for a whole timeout itself:
    # none lived that long, and jobs waited until the churn ended (p99 20 s
    # in a 20 s churn). Then the shared watch restarted whenever the kills
    # left no reaper passing for half a timeout (p99 9 s), and a reaper given
    # a stale now could reap a live worker.
    assert quantile(report.recoveries, 0.99) <= report.bound_s
    assert max(report.recoveries) <= report.bound_s
    # every extra run is a kill's: one cut short, or one finished whose outcome
    # still waited for its batch
    assert report.runs == report.jobs + report.rerun_interrupted + report.rerun_finished
    assert report.rerun_interrupted + report.rerun_finished <= len(report.held) + report.kills * 2
    assert report.tracebacks == []
