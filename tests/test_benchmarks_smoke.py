"""The benchmark suite runs end to end at tiny sizes and prints every
figure. Timings are never asserted: this only checks that it works."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import ROOT

FIGURES = {
    "1 single enqueue": ["delay()"],
    "2 bulk enqueue": ["map()"],
    "3 drain": ["noop task, 1 proc", "noop task, 2 proc", "incr task, 1 proc", "incr task, 2 proc",
                "2 procs / 1 proc"],
    "4 round trip": ["p50", "p99"],
    "5 delayed": ["lateness p50", "lateness p99", "promote a due backlog"],
    "6 memory": ["bytes/job beyond", "idle worker RSS: child", "idle worker RSS: supervisor"],
    "7 dashboard": ["overview", "failed jobs page"],
    "8 asyncio": ["adelay() x", "tasks at once", "round trip p50", "round trip p99"],
    "9 flow control": ["jobs held by a 50/s limit", "calls per start", "idle on an empty queue", "achieved starts/s"],
    "11 cluster": ["1 master, 3 namespaces", "3 masters, a namespace on each", "3 masters / 1 master",
                   "server CPU per job, 1 master", "server CPU per job, 3 masters", "share of the job calls on master 1",
                   "share of the job calls on master 3", "CPU cores of this machine"],
}


def test_smoke_run_exits_zero_and_prints_every_figure() -> None:
    keep = {"TASKQ_TEST_SERVER_BIN", "TASKQ_SERVER_BIN"}
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKQ_") or k in keep}
    proc = subprocess.run([sys.executable, "-m", "benchmarks", "--smoke"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, f"exit {proc.returncode}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "== summary" in proc.stdout
    summary = proc.stdout.split("== summary", 1)[1].splitlines()
    for figure, metrics in FIGURES.items():
        rows = [line for line in summary if line.startswith(figure)]
        for metric in metrics:
            assert any(metric in row for row in rows), f"{figure}: no {metric!r} row in\n{proc.stdout}"
        for row in rows:
            assert "n/a" not in row, f"a figure without a value: {row}"
