"""Chaos run: many jobs, several real workers, worker children SIGKILLed at a
steady pace and the server restarted once, gracefully, in the middle.

    python -m tests.chaos.chaos --jobs 5000 --workers 3

Every job appends its number to a file when it runs, so the run can tell
lost jobs (never succeeded) from duplicate executions (ran more than once:
the price of at-least-once delivery when a process dies between doing the
work and recording it). Prints the figures; exits 1 if any job was lost.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from taskq import TaskQ
from taskq.embedded import EphemeralServer
from tests.apps.crashy import build

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.crashy:app"
NAMESPACE = "chaos"


def registered_children(app: TaskQ, supervisors: set[int]) -> list[tuple[str, int]]:
    """(worker id, pid) of every registered worker whose parent is one of ``supervisors``."""
    b = app.backend
    ids = [w for w, _ in b.workers()]
    out = []
    for wid, (info, _) in zip(ids, b.worker_details(ids)):
        pid, ppid = info.get(b"pid"), info.get(b"ppid")
        if pid and ppid and int(ppid) in supervisors:
            out.append((wid, int(pid)))
    return out


@dataclass
class Kill:
    at: float
    pid: int
    worker_id: str
    held: list[str]
    jobs_back_at: float | None = None  # every held job running again (or finished)
    replaced_at: float | None = None  # the supervisor's new child registered


@dataclass
class Report:
    jobs: int
    workers: int
    concurrency: int
    threads: int = 1
    lost: list[int] = field(default_factory=list)
    never_ran: list[int] = field(default_factory=list)
    executions: int = 0
    duplicates: int = 0
    kills: list[Kill] = field(default_factory=list)
    restart_s: float | None = None
    restart_at_done: int = 0
    total_s: float = 0.0
    states: dict[str, int] = field(default_factory=dict)
    attempts_max: int = 0
    tracebacks: list[str] = field(default_factory=list)  # unexpected errors in the worker logs

    def lines(self) -> list[str]:
        def summary(values: list[float]) -> str:
            if not values:
                return "n/a"
            values = sorted(values)
            p95 = values[min(len(values) - 1, int(round(0.95 * (len(values) - 1))))]
            return (f"n={len(values)} min={values[0] * 1000:.0f}ms median={statistics.median(values) * 1000:.0f}ms "
                    f"p95={p95 * 1000:.0f}ms max={values[-1] * 1000:.0f}ms")

        back = [k.jobs_back_at - k.at for k in self.kills if k.held and k.jobs_back_at is not None]
        replaced = [k.replaced_at - k.at for k in self.kills if k.replaced_at is not None]
        restart = f"{self.restart_s:.2f}s (after {self.restart_at_done} jobs done)" if self.restart_s else "none"
        return [
            f"jobs: {self.jobs}  workers: {self.workers} x -c {self.concurrency} x -t {self.threads}",
            f"children SIGKILLed: {len(self.kills)} ({sum(1 for k in self.kills if k.held)} holding jobs)",
            f"server restarts: {1 if self.restart_s else 0}, graceful, took {restart}",
            f"job states: {dict(sorted(self.states.items()))}",
            f"lost jobs (not succeeded): {len(self.lost)}",
            f"jobs that never ran: {len(self.never_ran)}",
            f"executions: {self.executions}  duplicate executions: {self.duplicates}",
            f"most attempts of one job: {self.attempts_max}",
            f"tracebacks in worker logs: {len(self.tracebacks)}",
            f"recovery, kill -> held jobs running again: {summary(back)}",
            f"recovery, kill -> replacement child registered: {summary(replaced)}",
            f"total time: {self.total_s:.1f}s ({self.jobs / self.total_s:.0f} jobs/s)" if self.total_s else "",
        ]


class Chaos:
    def __init__(self, *, jobs: int, workers: int, concurrency: int = 2, threads: int = 1, kill_every: float = 0.5,
                 restart: bool = True, job_ms: float = 20.0, heartbeat_timeout: float = 10.0,
                 deadline: float = 600.0, keep: bool = False, log: Any = print) -> None:
        self.jobs = jobs
        self.workers = workers
        self.concurrency = concurrency
        self.threads = threads
        self.kill_every = kill_every
        self.restart = restart
        self.job_ms = job_ms
        self.heartbeat_timeout = heartbeat_timeout
        self.deadline = deadline
        self.log = log
        self.keep = keep
        self.dir = Path(tempfile.mkdtemp(prefix="taskq-chaos-"))
        self.marks = self.dir / "marks"
        self.marks.mkdir()
        self.server = EphemeralServer(appendonly=True)  # appendfsync everysec
        self.procs: list[subprocess.Popen[bytes]] = []
        self.report = Report(jobs, workers, concurrency, threads)
        self.stop = threading.Event()
        self.client: TaskQ | None = None
        self.monitor: TaskQ | None = None
        self.server_down = threading.Event()

    # ------------------------------------------------------------ setup

    def start_workers(self) -> None:
        env = dict(os.environ)
        env.update({
            "TASKQ_REDIS_URL": self.server.url, "TASKQ_NAMESPACE": NAMESPACE, "PYTHONPATH": str(ROOT),
            "TASKQ_HEARTBEAT_TIMEOUT": str(self.heartbeat_timeout),
            "TASKQ_DONE_MAX": str(self.jobs * 2),  # keep every finished job to check it
        })
        for i in range(self.workers):
            out = open(self.dir / f"worker-{i}.log", "wb")
            cmd = [sys.executable, "-m", "taskq_cli.main", "worker", APP, "-c", str(self.concurrency),
                   "-t", str(self.threads), "--loglevel", "WARNING"]
            self.procs.append(subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT))
            out.close()
        assert self.client is not None
        want = self.workers * self.concurrency * self.threads
        deadline = time.monotonic() + 60
        while len(self.client.backend.workers()) < want:
            for p in self.procs:
                if p.poll() is not None:
                    raise RuntimeError(f"a worker exited at start:\n{self.worker_logs()}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"workers did not register in 60s:\n{self.worker_logs()}")
            time.sleep(0.05)

    def worker_logs(self, tail: int = 40) -> str:
        out = []
        for f in sorted(self.dir.glob("worker-*.log")):
            out.append(f"--- {f.name}")
            out += f.read_text(errors="replace").splitlines()[-tail:]
        return "\n".join(out)

    # ------------------------------------------------------------ chaos

    def succeeded(self) -> int:
        assert self.monitor is not None
        raw = self.monitor.backend.task_counters().get("mark|succeeded")
        return int(raw or 0)

    def children(self) -> list[tuple[str, int]]:
        """(worker id, pid) of every registered child of our supervisors."""
        assert self.monitor is not None
        return registered_children(self.monitor, {p.pid for p in self.procs})

    def kill_one(self) -> None:
        assert self.monitor is not None
        b = self.monitor.backend
        children = self.children()
        if not children:
            return
        wid, pid = random.choice(children)
        held = [j.decode() for w, p in children if p == pid  # every consumer thread of that process
                for j in b.client.smembers(b.keys.worker_jobs(w))]
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        self.report.kills.append(Kill(time.monotonic(), pid, wid, held))

    def check_recoveries(self) -> None:
        assert self.monitor is not None
        b = self.monitor.backend
        pending = [k for k in self.report.kills if k.jobs_back_at is None or k.replaced_at is None]
        if not pending:
            return
        now = time.monotonic()
        ids = [w for w, _ in b.workers()]
        for k in pending:
            if k.replaced_at is None:
                slot = k.worker_id.rsplit(":", 1)[0] + ":"
                if any(w.startswith(slot) and w != k.worker_id for w in ids):
                    k.replaced_at = now
            if k.jobs_back_at is None:
                if not k.held:
                    k.jobs_back_at = k.at
                    continue
                hashes = b.job_hashes(k.held)
                if all(h.get("s") == b"succeeded" or (h.get("s") == b"active" and h.get("w", b"").decode()
                                                      != k.worker_id) for h in hashes):
                    k.jobs_back_at = now

    def chaos_loop(self) -> None:
        """Kill a random child every ``kill_every`` s; restart the server once."""
        next_kill = time.monotonic() + self.kill_every
        restarted = not self.restart
        while not self.stop.is_set():
            try:
                self.check_recoveries()
                now = time.monotonic()
                if now >= next_kill:
                    next_kill = now + self.kill_every
                    self.kill_one()
                if not restarted:
                    done = self.succeeded()
                    if done >= self.jobs * 0.4:
                        restarted = True
                        self.report.restart_at_done = done
                        t = time.monotonic()
                        self.server_down.set()
                        self.server.restart(graceful=True)
                        self.server_down.clear()
                        self.report.restart_s = time.monotonic() - t
            except Exception as exc:  # the server restarting, a child gone meanwhile...
                if not self.server_down.is_set():
                    self.log(f"chaos loop: {type(exc).__name__}: {exc}")
            time.sleep(0.01)

    # ------------------------------------------------------------ run

    def run(self) -> Report:
        self.server.start()
        try:
            self.client = build(self.server.url, NAMESPACE)
            self.monitor = TaskQ("chaos-monitor", self.server.url, namespace=NAMESPACE)
            self.start_workers()
            rng = random.Random(1)
            args = [(str(self.marks), n, rng.uniform(0, 2 * self.job_ms) / 1000) for n in range(self.jobs)]
            started = time.monotonic()
            jobs = self.client.tasks["mark"].map(args)
            ids = [j.id for j in jobs]
            chaos = threading.Thread(target=self.chaos_loop, name="chaos", daemon=True)
            chaos.start()
            deadline = started + self.deadline
            while True:
                try:
                    if self.succeeded() >= self.jobs:
                        break
                except Exception:
                    pass  # server restarting
                if time.monotonic() > deadline:
                    self.log(f"deadline of {self.deadline:g}s passed")
                    break
                for p in self.procs:
                    if p.poll() is not None:
                        raise RuntimeError(f"a worker supervisor died ({p.returncode}):\n{self.worker_logs()}")
                time.sleep(0.05)
            self.report.total_s = time.monotonic() - started
            self.stop.set()
            chaos.join(timeout=30)
            # Let the last kills' recoveries be measured.
            end = time.monotonic() + 10
            while time.monotonic() < end and any(k.replaced_at is None for k in self.report.kills):
                self.check_recoveries()
                time.sleep(0.01)
            self.check(ids)
            return self.report
        finally:
            self.shutdown()

    def check(self, ids: list[str]) -> None:
        assert self.client is not None
        r = self.report
        states: collections.Counter[str] = collections.Counter()
        for start in range(0, len(ids), 1000):
            chunk = ids[start:start + 1000]
            for n, h in zip(range(start, start + len(chunk)), self.client.backend.job_hashes(chunk)):
                state = h.get("s", b"missing").decode()
                states[state] += 1
                r.attempts_max = max(r.attempts_max, int(h.get("a", b"0")))
                if state != "succeeded":
                    r.lost.append(n)
        r.states = dict(states)
        runs: collections.Counter[int] = collections.Counter()
        for f in self.marks.iterdir():
            runs.update(int(x) for x in f.read_text().split())
        r.executions = sum(runs.values())
        r.never_ran = [n for n in range(self.jobs) if runs[n] == 0]
        r.duplicates = sum(c - 1 for c in runs.values() if c > 1)
        for f in sorted(self.dir.glob("worker-*.log")):
            text = f.read_text(errors="replace")
            r.tracebacks += [tb.split("\n\n")[0][:2000] for tb in text.split("Traceback (most recent call last)")[1:]]

    def shutdown(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:  # should not happen: take its children down too
                self.log(f"worker {p.pid} did not stop on SIGTERM; killing it")
                pids = subprocess.run(["pgrep", "-P", str(p.pid)], capture_output=True, text=True).stdout
                for pid in [p.pid, *map(int, pids.split())]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                p.wait()
        for app in (self.client, self.monitor):
            if app is not None:
                app.close()
        self.server.stop()
        if self.keep:
            self.log(f"kept {self.dir}")
        else:
            shutil.rmtree(self.dir, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--jobs", type=int, default=5000)
    parser.add_argument("--workers", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=2, help="children per worker")
    parser.add_argument("--threads", type=int, default=1, help="consumer threads per child")
    parser.add_argument("--kill-every", type=float, default=0.5, help="seconds between SIGKILLs")
    parser.add_argument("--job-ms", type=float, default=20.0, help="mean job duration")
    parser.add_argument("--heartbeat-timeout", type=float, default=10.0)
    parser.add_argument("--no-restart", action="store_true", help="do not restart the server")
    parser.add_argument("--deadline", type=float, default=600.0, help="give up after this many seconds")
    parser.add_argument("--keep", action="store_true", help="keep the worker logs and execution records")
    a = parser.parse_args(argv)
    report = Chaos(jobs=a.jobs, workers=a.workers, concurrency=a.concurrency, threads=a.threads,
                   kill_every=a.kill_every,
                   restart=not a.no_restart, job_ms=a.job_ms, heartbeat_timeout=a.heartbeat_timeout,
                   deadline=a.deadline, keep=a.keep).run()
    for line in report.lines():
        if line:
            print(line)
    for tb in report.tracebacks[:3]:
        print("--- a traceback from a worker log:\n" + tb)
    return 1 if report.lost or report.never_ran else 0


if __name__ == "__main__":
    sys.exit(main())
