"""Stress run of the job state machine: a real server, several real
worker processes (children SIGKILLed or SIGSTOPped past their heartbeat
timeout, supervisors killed and restarted, the server optionally restarted),
producers enqueuing with unique keys, resources (wait and skip), priorities,
delays, custom and reused ids, retries and tombstones, and job-control racers
(cancel, forced cancel, stall, unstall, requeue, retract, delete, requeue of
failed jobs, purge).

    python -m tests.chaos.stress --duration 60 --crash --force

The invariants of tests/storage/invariants.py are checked on an atomic
snapshot every ``--check-every`` seconds and once the workers are idle (then
nothing may be left queued, active, waiting or scheduled). With long TTLs
(the default) the counters must add up: jobs enqueued plus jobs brought back
from a finished state equal jobs finished, removed and still live. Exits 1
on any violation.
"""

from __future__ import annotations

import argparse
import collections
import os
import random
import signal
import subprocess
import sys
import tempfile
import threading
import time
import traceback
from pathlib import Path

from taskq import TaskQ
from taskq.embedded import EphemeralServer
from taskq.errors import TaskQError
from tests.apps import stress as stressapp
from tests.chaos.chaos import registered_children
from tests.storage.invariants import LIVE, jobs_of, snapshot, violations

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.apps.stress:app"


class Run:
    def __init__(self, a):
        self.a = a
        self.dir = Path(tempfile.mkdtemp(prefix="taskq-stress-"))
        self.server = EphemeralServer(appendonly=True)
        self.ns = "stress"
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.ids: list[str] = []
        self.created = 0
        self.revived = 0
        self.deleted_live = 0
        self.purged = 0
        self.ops = collections.Counter()
        self.errors: list[str] = []
        self.violations: list[str] = []
        self.procs: list[subprocess.Popen] = []
        self.kills = 0

    def env(self):
        e = dict(os.environ)
        e.update({"TASKQ_REDIS_URL": self.server.url, "TASKQ_NAMESPACE": self.ns,
                  "PYTHONPATH": str(ROOT), "TASKQ_HEARTBEAT_TIMEOUT": "2",
                  "TASKQ_DONE_MAX": str(self.a.done_max), "TASKQ_FAILED_MAX": str(self.a.done_max),
                  "TASKQ_SUCCEEDED_TTL": str(self.a.ttl), "TASKQ_FAILED_TTL": str(self.a.ttl)})
        return e

    def start_worker(self, i):
        out = open(self.dir / f"worker-{i}-{time.time():.0f}.log", "ab")
        cmd = [sys.executable, "-m", "taskq_cli.main", "worker", APP, "-c", str(self.a.concurrency),
               "-t", str(self.a.threads), "-Q", "a,b" if i % 2 == 0 else "b,a", "--loglevel", "ERROR"]
        if i == 1 and self.a.tasks_filter:
            cmd += ["--tasks", "w"]
        p = subprocess.Popen(cmd, cwd=ROOT, env=self.env(), stdout=out, stderr=subprocess.STDOUT)
        out.close()
        return p

    def app(self, name):
        return TaskQ(name, self.server.url, namespace=self.ns, done_max=self.a.done_max, failed_max=self.a.done_max,
                     succeeded_ttl=self.a.ttl, failed_ttl=self.a.ttl, heartbeat_timeout=2)

    # ---------------------------------------------------------- actors

    def producer(self, k):
        rng = random.Random(self.a.seed * 100 + k)
        tasks = stressapp.build(self.server.url, self.ns, done_max=self.a.done_max, failed_max=self.a.done_max,
                                succeeded_ttl=self.a.ttl, failed_ttl=self.a.ttl).tasks
        n = 0
        while not self.stop.is_set():
            try:
                task = rng.choice(["w", "w", "wt"])
                weights = [10, 2, 2, 2, 0.2 if self.a.crash else 0]
                mode = rng.choices(["ok", "fail", "retry", "requeue", "crash"], weights)[0]
                ms = rng.choice(self.a.ms)
                kw: dict = {"queue": rng.choice(["a", "b"])}
                if rng.random() < 0.3:
                    kw["unique_key"] = f"u{rng.randrange(8)}"
                if rng.random() < self.a.res_share:
                    kw["resource"] = f"r{rng.randrange(self.a.resources)}"
                    kw["on_locked"] = rng.choice(["wait", "wait", "skip"])
                if rng.random() < 0.5:
                    kw["priority"] = rng.choice([-10, 0, 10])
                if rng.random() < 0.2:
                    kw["delay"] = rng.choice([0.02, 0.1, 0.4])
                if rng.random() < 0.2:
                    kw["job_id"] = f"c{rng.randrange(40)}"  # custom ids, used again and again
                if rng.random() < 0.05:
                    kw["front"] = True
                if rng.random() < 0.05 and len(kw) == 1:
                    jobs = tasks[task].map([(n + i, ms, mode) for i in range(20)], queue=kw["queue"])
                    n += 20
                else:
                    jobs = [tasks[task].apply_async((n, ms, mode), **kw)]
                    n += 1
                got = [(j.id, j.created) for j in jobs]
                with self.lock:
                    for jid, created in got:
                        if created:
                            self.created += 1
                        self.ids.append(jid)
            except TaskQError as e:
                self.errors.append(f"producer: {type(e).__name__}: {e}")
            except Exception:
                self.errors.append("producer: " + traceback.format_exc())
            time.sleep(rng.uniform(0, self.a.enqueue_pause))

    def racer(self):
        rng = random.Random(self.a.seed * 7 + 1)
        app = self.app("racer")
        c = app.control
        while not self.stop.is_set():
            jid = None
            if rng.random() < 0.5:
                try:
                    jid = self.live_id(app, rng)
                except Exception:
                    jid = None
            if jid is None:
                with self.lock:
                    if self.ids:
                        jid = self.ids[-rng.randrange(1, min(len(self.ids), 300) + 1)]
            op = rng.choices(["cancel", "force", "stall", "unstall", "requeue", "requeue_front", "retract",
                              "delete", "requeue_failed", "purge"],
                             [6, 0.3 if self.a.force else 0, 4, 4, 4, 1, 2, 2, 2, 0.1])[0]
            try:
                if op == "purge":
                    n = app.backend.purge_queue(rng.choice(["a", "b"]), 20)
                    with self.lock:
                        self.purged += n
                    self.ops[op] += 1
                elif op == "requeue_failed":
                    ids = app.backend.zset_ids(app.backend.keys.failed, 20)
                    if ids:
                        prev = c.requeue(rng.choice(ids))
                        self.ops[op + ":" + prev] += 1
                        self.tally(op, prev)
                elif jid is not None:
                    prev = {"cancel": lambda: c.cancel(jid), "force": lambda: c.cancel(jid, force=True),
                            "stall": lambda: c.stall(jid), "unstall": lambda: c.unstall(jid),
                            "requeue": lambda: c.requeue(jid), "requeue_front": lambda: c.requeue(jid, front=True),
                            "retract": lambda: c.retract(jid), "delete": lambda: c.delete(jid)}[op]()
                    self.ops[f"{op}:{prev}"] += 1
                    self.tally(op, prev)
            except TaskQError:
                self.ops[f"{op}:refused"] += 1
            except Exception:
                self.errors.append(f"racer {op}: " + traceback.format_exc())
            time.sleep(rng.uniform(0, self.a.op_pause))

    def tally(self, op, prev):
        """Count the jobs an operation brought back from a finished state or removed while live."""
        with self.lock:
            if (op.startswith("requeue") and prev in ("failed", "cancelled", "skipped")) or (
                    op == "stall" and prev == "failed"):
                self.revived += 1
            elif op == "delete" and prev in LIVE:
                self.deleted_live += 1

    def cont(self, pid):
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass

    def live_id(self, app, rng):
        b, k = app.backend, app.backend.keys
        c = b.client
        where = rng.choice(["ready", "sched", "stalled", "active", "waiting", "failed"])
        if where == "ready":
            ids = c.lrange(k.ready(rng.choice("ab"), rng.choice([-10, 0, 10])), 0, 50)
        elif where == "sched":
            ids = c.zrange(k.schedule, 0, 50)
        elif where == "stalled":
            ids = c.zrange(k.stalled, 0, 50)
        elif where == "failed":
            ids = c.zrange(k.failed, -50, -1)
        elif where == "waiting":
            ids = c.lrange(k.lock_waiters(f"r{rng.randrange(self.a.resources)}"), 0, -1)
        else:
            ws = [w for w, _ in b.workers()]
            ids = list(c.smembers(k.worker_jobs(rng.choice(ws)))) if ws else []
        return rng.choice(ids).decode() if ids else None

    def children(self, app):
        return [pid for _, pid in registered_children(app, {p.pid for p in self.procs})]

    def killer(self):
        rng = random.Random(self.a.seed * 13)
        app = self.app("killer")
        while not self.stop.wait(self.a.kill_every):
            try:
                if rng.random() < self.a.sup_kill:
                    i = rng.randrange(len(self.procs))
                    self.procs[i].kill()
                    self.procs[i].wait()
                    self.procs[i] = self.start_worker(i)
                    self.kills += 1
                    self.ops["kill-supervisor"] += 1
                    continue
                kids = sorted(set(self.children(app)))
                if kids and rng.random() < self.a.pause:
                    pid = rng.choice(kids)
                    os.kill(pid, signal.SIGSTOP)
                    self.ops["pause-child"] += 1
                    threading.Timer(rng.uniform(1.5, 3.5), lambda p=pid: self.cont(p)).start()
                    continue
                if kids:
                    os.kill(rng.choice(kids), signal.SIGKILL)
                    self.kills += 1
                    self.ops["kill-child"] += 1
            except ProcessLookupError:
                pass
            except Exception:
                self.errors.append("killer: " + traceback.format_exc())

    # ---------------------------------------------------------- run

    def run(self):
        self.server.start()
        mon = self.app("monitor")
        try:
            for i in range(self.a.workers):
                self.procs.append(self.start_worker(i))
            deadline = time.monotonic() + 60
            while len(mon.backend.workers()) < self.a.workers * self.a.concurrency * self.a.threads:
                assert time.monotonic() < deadline, "workers did not start"
                time.sleep(0.05)
            threads = [threading.Thread(target=self.producer, args=(k,), daemon=True) for k in range(self.a.producers)]
            threads += [threading.Thread(target=self.racer, daemon=True) for _ in range(self.a.racers)]
            if self.a.kill_every > 0:
                threads.append(threading.Thread(target=self.killer, daemon=True))
            for t in threads:
                t.start()
            end = time.monotonic() + self.a.duration
            checks = 0
            restarts = self.a.restarts
            next_restart = time.monotonic() + self.a.duration / (restarts + 1) if restarts else None
            while time.monotonic() < end:
                time.sleep(self.a.check_every)
                if next_restart and time.monotonic() > next_restart:
                    print("restarting the server", flush=True)
                    self.server.restart(graceful=True)
                    self.ops["server-restart"] += 1
                    restarts -= 1
                    next_restart = time.monotonic() + self.a.duration / (self.a.restarts + 1) if restarts else None
                    continue
                try:
                    bad = violations(snapshot(mon))
                except Exception as e:
                    print("check failed:", e)
                    continue
                checks += 1
                if bad:
                    self.violations += [f"[t={time.monotonic() - end + self.a.duration:.1f}] {b}" for b in bad]
                    print("VIOLATIONS at checkpoint:", *bad[:20], sep="\n  ", flush=True)
            self.stop.set()
            for t in threads:
                t.join(30)
            # quiesce: let workers finish everything not stalled
            deadline = time.monotonic() + self.a.settle
            bad = []
            while time.monotonic() < deadline:
                snap = snapshot(mon)
                bad = violations(snap, idle=True)
                if not bad:
                    break
                time.sleep(0.2)
            if bad:
                print("FINAL VIOLATIONS:", *bad[:40], sep="\n  ", flush=True)
                self.violations += ["[final] " + b for b in bad]
            snap = snapshot(mon)
            self.counters(mon, snap)
            print(f"checks={checks} created={self.created} ids={len(self.ids)} kills={self.kills} "
                  f"revived={self.revived} deleted_live={self.deleted_live} purged={self.purged}")
            print("ops:", dict(sorted(self.ops.items())))
            states = collections.Counter(h.get("s") for h in jobs_of(snap).values())
            print("states:", dict(states))
            for e in self.errors[:10]:
                print("ERROR:", e)
            return 1 if self.violations else 0
        finally:
            for p in self.procs:
                if p.poll() is None:
                    p.send_signal(signal.SIGTERM)
            for p in self.procs:
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
            mon.close()
            self.server.stop()
            print("logs in", self.dir)

    def counters(self, app, snap):
        c = collections.Counter()
        for f, v in app.backend.task_counters().items():
            c[f.rpartition("|")[2]] += int(v)
        live = sum(1 for h in jobs_of(snap).values() if h.get("s") in LIVE)
        left = c["enqueued"] + self.revived
        right = (c["succeeded"] + c["failed"] + c["cancelled"] + c["skipped"] + c["retracted"]
                 + self.deleted_live + self.purged + live)
        print("counters:", dict(c), f"live={live}")
        if self.a.ttl >= 3600 and left != right:
            msg = f"counters: enqueued+revived={left} != finished+removed+live={right}"
            print(msg)
            self.violations.append(msg)
        if c["enqueued"] != self.created:
            msg = f"enqueued counter {c['enqueued']} != created {self.created}"
            print(msg)
            self.violations.append(msg)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--duration", type=float, default=60)
    p.add_argument("--workers", type=int, default=3)
    p.add_argument("--concurrency", type=int, default=2, help="children per worker")
    p.add_argument("--threads", type=int, default=2, help="consumer threads per child")
    p.add_argument("--producers", type=int, default=2)
    p.add_argument("--racers", type=int, default=2)
    p.add_argument("--kill-every", type=float, default=1.0, help="seconds between chaos events (0: none)")
    p.add_argument("--sup-kill", type=float, default=0.1, help="share of chaos events that kill a supervisor")
    p.add_argument("--crash", action="store_true", help="some jobs end their process on the first attempt")
    p.add_argument("--tasks-filter", action="store_true", help="the second worker serves one task only")
    p.add_argument("--restarts", type=int, default=0, help="graceful server restarts during the run")
    p.add_argument("--ms", type=lambda x: [int(v) for v in x.split(",")], default=[0, 0, 1, 5, 20, 80],
                   help="job durations (ms) to draw from")
    p.add_argument("--resources", type=int, default=4)
    p.add_argument("--res-share", type=float, default=0.3, help="share of jobs that need a resource")
    p.add_argument("--pause", type=float, default=0.3, help="share of chaos events that SIGSTOP a child for 1.5-3.5 s")
    p.add_argument("--force", action="store_true", help="forced cancels too (each kills a child)")
    p.add_argument("--ttl", type=float, default=3600, help="finished jobs' TTL (short: expiry, reused ids)")
    p.add_argument("--done-max", type=int, default=100000, help="cap of the finished indexes")
    p.add_argument("--enqueue-pause", type=float, default=0.05)
    p.add_argument("--op-pause", type=float, default=0.005)
    p.add_argument("--check-every", type=float, default=2.0)
    p.add_argument("--settle", type=float, default=30, help="seconds the workers get to go idle at the end")
    a = p.parse_args()
    sys.exit(Run(a).run())


if __name__ == "__main__":
    main()
