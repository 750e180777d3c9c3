"""Figure 11: on a Redis/Valkey Cluster of 1 and of 3 masters.

In the default key layout a namespace lives in one hash slot (``{ns}``), so
a cluster spreads the load by namespace: three namespaces, on 3 masters one
per master
(:meth:`~taskq.ephemeral_cluster.EphemeralCluster.namespace_per_master`),
on 1 master all three on it. With ``key_layout='queue'`` each queue has a
slot (``{ns:queue}``): one namespace with three queues, one per master, a
worker per queue. Both clusters run on this machine, so the
masters share its cores with the workers: the core count is printed next
to the figures, and 3 masters outrun 1 only when there are cores to spare.

taskq: one ``taskq worker -c 1`` per namespace (started once per cluster).
Each run pauses the queues, enqueues N/3 no-op jobs per namespace, resumes
them and times from the resume to the last finish (the newest score in each
``{ns}:done``, server clock). Around that window: the masters' server CPU
(``used_cpu_sys`` + ``used_cpu_user`` deltas, summed) per job, and each
master's share of the job calls (``FCALL``/``EVALSHA`` deltas of
``INFO commandstats``).

raw: the same slots through redis-py's ``RedisCluster``: N/3 ids per
namespace ``LPUSH``ed in batches of 1,000 onto a staging list, one consumer
process per namespace blocked on ``BLMPOP`` (batches of 100) of an empty
list in the same slot, the list ``RENAME``d into place; timed from the
rename to the last consumer's last take. The CPU and call shares are read
the same way (``BLMPOP`` calls).
"""

from __future__ import annotations

import os
import sys
import time
from dataclasses import dataclass, field

import redis
from redis.cluster import ClusterNode, RedisCluster

from taskq.ephemeral_cluster import EphemeralCluster

from .common import Context, Proc, client, wait_until
from .report import Row
from .tasks import build

NAME = "cluster"
TITLE = "11 cluster"
MASTERS = (1, 3)
NAMESPACES = 3
FILL_BATCH = 1000
JOB_CALLS = ("cmdstat_fcall", "cmdstat_evalsha")


@dataclass
class Sample:
    rate: list[float] = field(default_factory=list)  # jobs/s
    cpu_us: list[float] = field(default_factory=list)  # server CPU per job, µs
    shares: list[list[float]] = field(default_factory=list)  # per run: each master's share of the calls, %


def masters_snapshot(nodes: list[redis.Redis], calls: tuple[str, ...]) -> list[tuple[float, int]]:
    """Per master: (CPU seconds used, calls of the commands named)."""
    out = []
    for r in nodes:
        cpu = r.info("cpu")
        stats = r.info("commandstats")
        out.append((float(cpu["used_cpu_sys"]) + float(cpu["used_cpu_user"]),
                    sum(int(v["calls"]) for k, v in stats.items() if k in calls)))
    return out


def record(sample: Sample, n: int, seconds: float, before: list[tuple[float, int]],
           after: list[tuple[float, int]]) -> None:
    sample.rate.append(n / max(seconds, 0.001))
    sample.cpu_us.append(sum(a[0] - b[0] for a, b in zip(after, before)) * 1e6 / n)
    calls = [a[1] - b[1] for a, b in zip(after, before)]
    sample.shares.append([100 * c / max(sum(calls), 1) for c in calls])


class Bench:
    """One cluster, its namespaces, its client and its workers."""

    def __init__(self, ctx: Context, cluster: EphemeralCluster, layout: str = "namespace") -> None:
        self.ctx, self.cluster, self.layout = ctx, cluster, layout
        if layout == "queue":  # one namespace; its queues' slots {benchq:<queue>}, one per master
            self.names = cluster.namespace_per_master("benchq:q")
            self.queues = [n.split(":")[1] for n in self.names]
        else:
            self.names = (cluster.namespace_per_master("bench") if len(cluster.masters) == NAMESPACES
                          else [f"bench{i}" for i in range(NAMESPACES)])
            self.queues = ["default"] * NAMESPACES
        self.per = ctx.sizes.cluster // NAMESPACES
        self.rc = RedisCluster(startup_nodes=[ClusterNode("127.0.0.1", m.port) for m in cluster.masters],
                               socket_connect_timeout=2.0, socket_timeout=30.0, protocol=2)
        self.nodes = [client(f"redis://127.0.0.1:{m.port}/0") for m in cluster.masters]
        self.apps = ([build(cluster.url, "benchq", key_layout="queue")] * NAMESPACES if layout == "queue"
                     else [build(cluster.url, ns, key_layout="namespace") for ns in self.names])
        self.workers: list[Proc] = []

    def close(self) -> None:
        for app in set(self.apps):
            app.close()
        self.rc.close()
        for r in self.nodes:
            r.close()

    def counter(self, ns: str) -> int:
        queue = ns.split(":")[1] if ":" in ns else "default"
        return int(self.rc.hget("{" + ns + "}:st:c", f"{queue}:noop|succeeded") or 0)

    def start_workers(self) -> None:
        if self.layout == "queue":
            self.workers = [self.ctx.worker("benchq", 1, self.cluster.url, queues=q, key_layout="queue")
                            for q in self.queues]
        else:
            self.workers = [self.ctx.worker(ns, 1, self.cluster.url) for ns in self.names]

        def registered() -> bool:
            for w in self.workers:
                w.check()
            return all(int(self.rc.zcard("{" + ns + "}:workers")) >= 1 for ns in self.names)

        wait_until(registered, 60, "the workers to register", interval=0.05)

    def taskq_run(self, sample: Sample) -> None:
        for app, q in zip(self.apps, self.queues):
            app.control.pause_queue(q)
        base = [self.counter(ns) for ns in self.names]
        for app, q in zip(self.apps, self.queues):
            app.tasks["noop"].map([()] * self.per, queue=q)
        before = masters_snapshot(self.nodes, JOB_CALLS)
        if [self.counter(ns) for ns in self.names] != base:
            raise RuntimeError("jobs of a paused queue ran before the resume")
        t0 = time.time()
        for app, q in zip(self.apps, self.queues):
            app.control.resume_queue(q)

        def finished() -> bool:
            for w in self.workers:
                w.check()
            return all(self.counter(ns) >= b + self.per for ns, b in zip(self.names, base))

        wait_until(finished, 60 + self.per / 100, "the jobs to finish", interval=0.02)
        after = masters_snapshot(self.nodes, JOB_CALLS)
        end = max(self.rc.zrevrange("{" + ns + "}:done", 0, 0, withscores=True)[0][1] for ns in self.names)
        record(sample, self.per * NAMESPACES, end / 1000 - t0, before, after)

    def raw_run(self, sample: Sample, run_no: int) -> None:
        keys = [("{" + ns + "}" + f":raw{run_no}:stage", "{" + ns + "}" + f":raw{run_no}:src",
                 "{" + ns + "}" + f":raw{run_no}:ready") for ns in self.names]
        for stage, _, _ in keys:
            for start in range(0, self.per, FILL_BATCH):
                self.rc.lpush(stage, *(f"{i:016d}" for i in range(start, min(self.per, start + FILL_BATCH))))
        consumers = [Proc(self.ctx, [sys.executable, "-m", "benchmarks.raw", "blmpop", self.cluster.url, src, ready,
                                     str(self.per)], stdout=True) for _, src, ready in keys]
        wait_until(lambda: all(int(self.rc.get(ready) or 0) >= 1 for _, _, ready in keys), 60, "raw consumers",
                   interval=0.01)
        before = masters_snapshot(self.nodes, ("cmdstat_blmpop",))
        t0 = time.time()
        for stage, src, _ in keys:
            self.rc.rename(stage, src)
        results = self.ctx.raw_results(consumers, 60 + self.per / 100)
        after = masters_snapshot(self.nodes, ("cmdstat_blmpop",))
        self.ctx.procs[:] = [p for p in self.ctx.procs if p not in consumers]
        if sum(x["n"] for x in results) != self.per * NAMESPACES:
            raise RuntimeError(f"raw consumers took {[x['n'] for x in results]} of {self.per} each")
        record(sample, self.per * NAMESPACES, max(x["last"] for x in results) - t0, before, after)


def measure(ctx: Context, masters: int, layout: str = "namespace") -> tuple[Sample, Sample]:
    ours, raw = Sample(), Sample()
    cluster = EphemeralCluster(masters, binary=ctx.server_bin, appendonly=ctx.appendonly,
                               extra_args=ctx.server_args).start()
    bench: Bench | None = None
    try:
        bench = Bench(ctx, cluster, layout)
        bench.start_workers()
        for run_no in range(ctx.runs):
            bench.taskq_run(ours)
            bench.raw_run(raw, run_no)
    finally:
        ctx.reap()
        if bench is not None:
            bench.close()
        cluster.stop()
    return ours, raw


def run(ctx: Context) -> list[Row]:
    n = ctx.sizes.cluster // NAMESPACES * NAMESPACES
    results: dict[int, tuple[Sample, Sample]] = {m: measure(ctx, m) for m in MASTERS}
    (one, raw_one), (three, raw_three) = results[1], results[3]
    queued, raw_queued = measure(ctx, 3, "queue")
    cores = float(os.cpu_count() or 0)
    rows = [
        Row(TITLE, f"1 master, {NAMESPACES} namespaces on it, x{n:,}", "jobs/s", one.rate, raw_one.rate),
        Row(TITLE, f"3 masters, a namespace on each, x{n:,}", "jobs/s", three.rate, raw_three.rate),
        Row(TITLE, "3 masters / 1 master", "×", speedup(one.rate, three.rate), speedup(raw_one.rate, raw_three.rate),
            show_ratio=False),
        Row(TITLE, f"3 masters, one namespace, a slot per queue (3 queues), x{n:,}", "jobs/s", queued.rate,
            raw_queued.rate),
        Row(TITLE, "3 masters, a slot per queue / 1 master", "×", speedup(one.rate, queued.rate),
            speedup(raw_one.rate, raw_queued.rate), show_ratio=False),
        Row(TITLE, "server CPU per job, 1 master", "µs", one.cpu_us, raw_one.cpu_us),
        Row(TITLE, "server CPU per job, 3 masters (their sum)", "µs", three.cpu_us, raw_three.cpu_us),
    ]
    for i in range(3):
        rows.append(Row(TITLE, f"share of the job calls on master {i + 1} of 3", "%",
                        [s[i] for s in three.shares], [s[i] for s in raw_three.shares], show_ratio=False))
    for i in range(3):
        rows.append(Row(TITLE, f"share of the job calls on master {i + 1} of 3, a slot per queue", "%",
                        [s[i] for s in queued.shares], [s[i] for s in raw_queued.shares], show_ratio=False))
    rows.append(Row(TITLE, "CPU cores of this machine (all processes share them)", "cores",
                    [cores] * ctx.runs, show_ratio=False))
    return rows


def speedup(one: list[float], three: list[float]) -> list[float]:
    return [b / a for a, b in zip(one, three)]
