"""Churn run: whole workers (supervisor and children, one process group)
SIGKILLed every 2-3 s each and started again, so no process lives as long
as ``heartbeat_timeout``, while jobs keep coming.

    python -m tests.chaos.churn --seconds 60 --workers 3

A killed worker hands nothing back: only the reapers of the other workers,
each as short-lived, can return its jobs. The run measures, per job a killed
worker held, the time from the kill until the job left it (queued again,
running elsewhere, or finished), and classifies every extra run of a job:

- *interrupted*: a run that started and never ended (killed mid-job);
- *finished*: a run that ended, whose outcome was still waiting for its
  batch (``flush_interval``) when the process was killed.

It also measures that batching window: how long after a job's last run ended
the server recorded its outcome. Prints the figures; exits 1 if a job was
lost or stuck, or a recovery took longer than ``heartbeat_timeout`` + 2 s.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from taskq import TaskQ
from taskq.embedded import EphemeralServer
from tests.apps.crashy import build

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.crashy:app"
NAMESPACE = "churn"


def quantile(values: list[float], q: float) -> float:
    """The ``q`` quantile (nearest rank) of ``values`` (not empty)."""
    s = sorted(values)
    return s[min(len(s) - 1, max(0, int(round(q * len(s) + 0.5)) - 1))]


@dataclass
class Held:
    """A job a killed worker held when it was killed."""

    job_id: str
    worker_id: str
    killed_at: float
    back_at: float | None = None


@dataclass
class Report:
    jobs: int = 0
    workers: int = 0
    heartbeat_timeout: float = 0.0
    kills: int = 0
    lifetimes: list[float] = field(default_factory=list)  # seconds each killed supervisor lived
    states: dict[str, int] = field(default_factory=dict)
    lost: list[int] = field(default_factory=list)  # not succeeded at the end
    stuck: list[int] = field(default_factory=list)  # still queued/active/scheduled at the end
    never_ran: list[int] = field(default_factory=list)
    runs: int = 0
    rerun_interrupted: int = 0
    rerun_finished: int = 0
    held: list[Held] = field(default_factory=list)
    outcome_wait_ms: list[float] = field(default_factory=list)
    churn_s: float = 0.0
    drain_s: float = 0.0
    tracebacks: list[str] = field(default_factory=list)

    @property
    def recoveries(self) -> list[float]:
        return [h.back_at - h.killed_at for h in self.held if h.back_at is not None]

    @property
    def unrecovered(self) -> list[Held]:
        return [h for h in self.held if h.back_at is None]

    @property
    def bound_s(self) -> float:
        return self.heartbeat_timeout + 2.0

    def lines(self) -> list[str]:
        rec = self.recoveries
        wait = self.outcome_wait_ms
        life = self.lifetimes
        return [
            f"jobs: {self.jobs}  workers: {self.workers} x -c 2  heartbeat_timeout: {self.heartbeat_timeout:g}s",
            f"churn: {self.churn_s:.0f}s, {self.kills} workers SIGKILLed (process group), lived "
            + (f"{min(life):.1f}-{max(life):.1f}s" if life else "n/a"),
            f"job states: {dict(sorted(self.states.items()))}",
            f"lost: {len(self.lost)}  stuck: {len(self.stuck)}  never ran: {len(self.never_ran)}",
            f"runs: {self.runs}  re-runs: {self.rerun_interrupted + self.rerun_finished} "
            f"(interrupted work: {self.rerun_interrupted}, finished work: {self.rerun_finished})",
            f"jobs held by killed workers: {len(self.held)}  not recovered: {len(self.unrecovered)}",
            "recovery, kill -> job back: " + (
                f"p50 {quantile(rec, 0.5):.2f}s  p99 {quantile(rec, 0.99):.2f}s  max {max(rec):.2f}s "
                f"(bound {self.bound_s:g}s)" if rec else "n/a"),
            "outcome wait, run ended -> outcome recorded: " + (
                f"p50 {quantile(wait, 0.5):.1f}ms  p99 {quantile(wait, 0.99):.1f}ms  max {max(wait):.1f}ms"
                if wait else "n/a"),
            f"drain after the churn: {self.drain_s:.1f}s  tracebacks in worker logs: {len(self.tracebacks)}",
        ]


class Slot:
    """One worker kept running: killed at ``kill_at``, started again at once."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.kill_at = 0.0


class Churn:
    def __init__(self, *, seconds: float = 60.0, workers: int = 3, rate: float = 8.0, quick_rate: float = 40.0,
                 job_s: tuple[float, float] = (0.1, 0.5), life_s: tuple[float, float] = (2.0, 3.0),
                 heartbeat_timeout: float = 5.0, drain_deadline: float = 60.0, keep: bool = False,
                 seed: int = 1) -> None:
        assert life_s[1] < heartbeat_timeout, "the point: every worker lives shorter than heartbeat_timeout"
        self.seconds = seconds
        self.workers = workers
        self.rate = rate
        self.quick_rate = quick_rate
        self.job_s = job_s
        self.life_s = life_s
        self.heartbeat_timeout = heartbeat_timeout
        self.drain_deadline = drain_deadline
        self.keep = keep
        self.rng = random.Random(seed)
        self.dir = Path(tempfile.mkdtemp(prefix="taskq-churn-"))
        self.marks = self.dir / "marks"
        self.marks.mkdir()
        self.server = EphemeralServer()
        self.slots = [Slot(i) for i in range(workers)]
        self.report = Report(workers=workers, heartbeat_timeout=heartbeat_timeout)
        self.client: TaskQ | None = None
        self.monitor: TaskQ | None = None
        self.ids: list[str] = []
        self.logs = 0

    # ------------------------------------------------------------ workers

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update({
            "TASKQ_REDIS_URL": self.server.url, "TASKQ_NAMESPACE": NAMESPACE, "PYTHONPATH": str(ROOT),
            "TASKQ_HEARTBEAT_TIMEOUT": str(self.heartbeat_timeout),
        })
        return env

    def start(self, slot: Slot, churn: bool) -> None:
        self.logs += 1
        out = open(self.dir / f"worker-{self.logs}.log", "wb")
        cmd = [sys.executable, "-m", "taskq_cli.main", "worker", APP, "-c", "2", "--loglevel", "WARNING"]
        slot.proc = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT,
                                     start_new_session=True)  # its own process group: killed whole
        out.close()
        slot.started = time.monotonic()
        slot.kill_at = slot.started + self.rng.uniform(*self.life_s) if churn else float("inf")

    def kill(self, slot: Slot) -> None:
        """SIGKILL the worker's whole process group; note the jobs it held."""
        assert slot.proc is not None and self.monitor is not None
        pid = slot.proc.pid
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        at = time.monotonic()
        slot.proc.wait()
        self.report.kills += 1
        self.report.lifetimes.append(at - slot.started)
        b = self.monitor.backend
        mine = [w for w, _ in b.workers() if w.split(":")[1:2] == [str(pid)]]  # host:supervisor pid:...
        for wid, (_, jobs) in zip(mine, b.worker_details(mine)):
            self.report.held += [Held(j.decode(), wid, at) for j in jobs]

    def check_recoveries(self) -> None:
        assert self.monitor is not None
        pending = [h for h in self.report.held if h.back_at is None]
        if not pending:
            return
        now = time.monotonic()
        for h, j in zip(pending, self.monitor.backend.job_hashes([h.job_id for h in pending])):
            if not (j.get("s") == b"active" and j.get("w", b"").decode() == h.worker_id):
                h.back_at = now

    # ------------------------------------------------------------ run

    def run(self) -> Report:
        self.server.start()
        try:
            self.client = build(self.server.url, NAMESPACE)
            self.monitor = TaskQ("churn-monitor", self.server.url, namespace=NAMESPACE)
            for slot in self.slots:
                self.start(slot, churn=True)
                slot.kill_at = slot.started + (slot.index + 1) * self.life_s[1] / self.workers  # staggered
            work, quick = self.client.tasks["work"], self.client.tasks["work_quick"]
            began = time.monotonic()
            next_job = next_quick = began
            while time.monotonic() - began < self.seconds:
                now = time.monotonic()
                while next_job <= now:
                    self.ids.append(work.delay(str(self.marks), len(self.ids), self.rng.uniform(*self.job_s)).id)
                    next_job += 1 / self.rate
                while self.quick_rate and next_quick <= now:  # runs of 0-2 ms
                    self.ids.append(quick.delay(str(self.marks), len(self.ids), self.rng.uniform(0, 0.002)).id)
                    next_quick += 1 / self.quick_rate
                for slot in self.slots:
                    if now >= slot.kill_at:
                        self.kill(slot)
                        self.start(slot, churn=True)
                self.check_recoveries()
                time.sleep(0.02)
            self.report.churn_s = time.monotonic() - began
            for slot in self.slots:  # the churn ends: the workers now running stay
                slot.kill_at = float("inf")
            drained = time.monotonic()
            while time.monotonic() - drained < self.drain_deadline:
                self.check_recoveries()
                c = self.monitor.backend.task_counters()
                if c.get("work|succeeded", 0) + c.get("work_quick|succeeded", 0) >= len(self.ids) \
                        and not self.report.unrecovered:
                    break
                time.sleep(0.05)
            self.report.drain_s = time.monotonic() - drained
            self.check()
            return self.report
        finally:
            self.shutdown()

    def check(self) -> None:
        assert self.client is not None
        r = self.report
        r.jobs = len(self.ids)
        states: collections.Counter[str] = collections.Counter()
        finished_ms: dict[int, float] = {}
        for start in range(0, len(self.ids), 1000):
            chunk = self.ids[start:start + 1000]
            for n, h in zip(range(start, start + len(chunk)), self.client.backend.job_hashes(chunk)):
                state = h.get("s", b"missing").decode()
                states[state] += 1
                if state != "succeeded":
                    r.lost.append(n)
                if state in ("queued", "active", "scheduled", "waiting"):
                    r.stuck.append(n)
                if h.get("f"):
                    finished_ms[n] = float(h["f"])
        r.states = dict(states)
        starts: collections.Counter[int] = collections.Counter()
        ends: collections.Counter[int] = collections.Counter()
        last_end: dict[int, float] = {}
        for f in self.marks.iterdir():
            for line in f.read_text().splitlines():
                kind, n, at = line.split()
                if kind == "s":
                    starts[int(n)] += 1
                else:
                    ends[int(n)] += 1
                    last_end[int(n)] = max(last_end.get(int(n), 0.0), float(at))
        r.runs = sum(starts.values())
        r.never_ran = [n for n in range(r.jobs) if not starts[n]]
        r.rerun_finished = sum(max(0, ends[n] - 1) for n in range(r.jobs))
        r.rerun_interrupted = sum(starts[n] - ends[n] for n in range(r.jobs) if ends[n]) + sum(
            starts[n] for n in range(r.jobs) if not ends[n])
        # the server's clock and time.time() are the same machine's
        r.outcome_wait_ms = [max(0.0, finished_ms[n] - last_end[n] * 1000) for n in finished_ms if n in last_end]
        for f in sorted(self.dir.glob("worker-*.log")):
            text = f.read_text(errors="replace")
            r.tracebacks += [tb.split("\n\n")[0][:2000] for tb in text.split("Traceback (most recent call last)")[1:]]

    def shutdown(self) -> None:
        for slot in self.slots:
            if slot.proc is not None and slot.proc.poll() is None:
                slot.proc.send_signal(signal.SIGTERM)
        for slot in self.slots:
            if slot.proc is None:
                continue
            try:
                slot.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(slot.proc.pid, signal.SIGKILL)
                slot.proc.wait()
        for app in (self.client, self.monitor):
            if app is not None:
                app.close()
        self.server.stop()
        if self.keep:
            print(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the churn lasts")
    parser.add_argument("--workers", type=int, default=3, help="workers kept running (each -c 2)")
    parser.add_argument("--rate", type=float, default=8.0, help="jobs of 0.1-0.5 s enqueued per second")
    parser.add_argument("--quick-rate", type=float, default=40.0, help="jobs of 0-2 ms enqueued per second")
    parser.add_argument("--heartbeat-timeout", type=float, default=5.0)
    parser.add_argument("--keep", action="store_true", help="keep the worker logs and run records")
    a = parser.parse_args(argv)
    report = Churn(seconds=a.seconds, workers=a.workers, rate=a.rate, quick_rate=a.quick_rate,
                   heartbeat_timeout=a.heartbeat_timeout,
                   keep=a.keep).run()
    for line in report.lines():
        print(line)
    for tb in report.tracebacks[:3]:
        print("--- a traceback from a worker log:\n" + tb)
    rec = report.recoveries
    late = bool(rec) and quantile(rec, 0.99) > report.bound_s
    return 1 if report.lost or report.stuck or report.unrecovered or late else 0


if __name__ == "__main__":
    sys.exit(main())
