"""A small, fast chaos run (the full one: ``python -m tests.chaos.chaos``)."""

from __future__ import annotations

import pytest

from tests.chaos.chaos import Chaos


@pytest.mark.parametrize("threads", [1, 3])
def test_no_job_is_lost_while_children_are_killed_and_the_server_restarts(threads):
    report = Chaos(jobs=300, workers=2, concurrency=2, threads=threads, kill_every=0.5, job_ms=40, restart=True,
                   deadline=90).run()
    for line in report.lines():
        if line:
            print(line)
    assert report.states == {"succeeded": 300}
    assert report.lost == []
    assert report.never_ran == []
    assert report.executions >= 300
    assert len(report.kills) >= 2  # the run lasts a few seconds; a kill every 0.5 s
    assert report.restart_s is not None
    assert report.tracebacks == []
