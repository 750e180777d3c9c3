"""Snapshots of what a namespace is doing: counters, run times, queue depths
and latency, throughput per minute, and the registry of live workers.

Everything is read from the counters the scripts keep (see ``lua/_lib.lua``):
reading stats never writes, and costs a handful of pipelined round trips.

Run-time quantiles are estimated from the histogram buckets: the value
reported is the upper bound of the bucket that holds the quantile (so p95 =
250 ms means "95 % of runs took at most 250 ms"). A quantile that falls in
the overflow bucket (over 300 s) is ``math.inf``, written ``"+Inf"`` by
``as_dict()``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from .appview import AppView
from .storage.keys import HISTOGRAM_BUCKETS_MS

COUNTERS = ("enqueued", "started", "succeeded", "failed", "retried", "timed_out",
            "skipped", "cancelled", "requeued", "retracted", "lost", "expired")
# Counters that end a job: a queue's "out" rate.
FINISHING = ("succeeded", "failed", "skipped", "cancelled", "expired")
BOUNDS_MS: tuple[float, ...] = (*map(float, HISTOGRAM_BUCKETS_MS), math.inf)
WINDOW_MINUTES = 60


def _num(x: float | None) -> float | str | None:
    """A float for JSON: infinity as the string "+Inf"."""
    return "+Inf" if x is not None and math.isinf(x) else x


def _bound_label(bound: float) -> str:
    return "+Inf" if math.isinf(bound) else f"{bound:g}"


@dataclass(frozen=True)
class RunTime:
    """Run-time histogram of one task (runs that ended in an outcome;
    requeues and hand-backs are not timed)."""

    counts: tuple[int, ...] = (0,) * len(BOUNDS_MS)  # per bucket of BOUNDS_MS, not cumulative
    sum_ms: int = 0

    @classmethod
    def from_fields(cls, h: dict[str, int]) -> RunTime:
        counts = [h.get(f"le_{b}", 0) for b in HISTOGRAM_BUCKETS_MS]
        counts.append(h.get("le_inf", 0))
        return cls(tuple(counts), h.get("sum_ms", 0))

    @property
    def count(self) -> int:
        return sum(self.counts)

    @property
    def buckets(self) -> list[tuple[float, int]]:
        """Cumulative ``(upper bound ms, runs at most that long)``, ending with +Inf."""
        out, total = [], 0
        for bound, n in zip(BOUNDS_MS, self.counts):
            total += n
            out.append((bound, total))
        return out

    @property
    def mean_ms(self) -> float | None:
        return self.sum_ms / self.count if self.count else None

    def quantile(self, q: float) -> float | None:
        """Upper bound (ms) of the bucket holding quantile ``q``; None without runs."""
        n = self.count
        if not n:
            return None
        rank = max(1, math.ceil(q * n))
        for bound, cum in self.buckets:
            if cum >= rank:
                return bound
        return math.inf

    @property
    def p50_ms(self) -> float | None:
        return self.quantile(0.50)

    @property
    def p95_ms(self) -> float | None:
        return self.quantile(0.95)

    @property
    def p99_ms(self) -> float | None:
        return self.quantile(0.99)

    def as_dict(self) -> dict[str, Any]:
        return {
            "count": self.count, "sum_ms": self.sum_ms, "mean_ms": self.mean_ms,
            "p50_ms": _num(self.p50_ms), "p95_ms": _num(self.p95_ms), "p99_ms": _num(self.p99_ms),
            "buckets": {_bound_label(b): n for b, n in self.buckets},
        }


@dataclass(frozen=True)
class TaskStats:
    name: str
    counters: dict[str, int]  # every name of COUNTERS
    run_time: RunTime = field(default_factory=RunTime)

    def as_dict(self) -> dict[str, Any]:
        return {"counters": dict(self.counters), "run_time": self.run_time.as_dict()}


@dataclass(frozen=True)
class QueueStats:
    name: str
    depth: int  # ready jobs
    levels: dict[int, int]  # ready jobs per priority level (non-empty levels only)
    latency_s: float  # age of the oldest ready job; 0 when the queue is empty
    counters: dict[str, int]  # every name of COUNTERS
    last_minute: dict[str, int] = field(default_factory=dict)  # counters of the last complete minute
    paused: bool = False  # workers take no job from it (app.control.pause_queue)
    held: int = 0  # jobs its flow limits hold back (state waiting), not in depth

    @property
    def rate_in(self) -> int:
        """Jobs enqueued in the last complete minute."""
        return self.last_minute.get("enqueued", 0)

    @property
    def rate_out(self) -> int:
        """Jobs finished (any outcome) in the last complete minute."""
        return sum(self.last_minute.get(c, 0) for c in FINISHING)

    def as_dict(self) -> dict[str, Any]:
        return {"depth": self.depth, "levels": {str(p): n for p, n in sorted(self.levels.items(), reverse=True)},
                "latency_s": self.latency_s, "counters": dict(self.counters),
                "per_minute": {"in": self.rate_in, "out": self.rate_out}, "paused": self.paused, "held": self.held}


@dataclass(frozen=True)
class Stats:
    """One snapshot of a namespace (times on the server's clock)."""

    namespace: str
    now_ms: int
    tasks: dict[str, TaskStats]
    queues: dict[str, QueueStats]
    scheduled: int  # delayed jobs and retries waiting for their time
    active: int  # jobs leased by workers (running or prefetched)
    stalled: int
    failed: int  # jobs kept in the failed index
    worker_count: int
    # (minute start, epoch seconds; {counter: n}) for the last 60 minutes,
    # oldest first; the last entry is the current, partial minute.
    throughput: list[tuple[int, dict[str, int]]]
    failures_last_hour: int

    @property
    def ready(self) -> int:
        return sum(q.depth for q in self.queues.values())

    def as_dict(self) -> dict[str, Any]:
        """Plain JSON-able data (see the module docstring for "+Inf")."""
        return {
            "namespace": self.namespace, "now_ms": self.now_ms,
            "tasks": {n: t.as_dict() for n, t in sorted(self.tasks.items())},
            "queues": {n: q.as_dict() for n, q in sorted(self.queues.items())},
            "ready": self.ready, "scheduled": self.scheduled, "active": self.active,
            "stalled": self.stalled, "failed": self.failed, "worker_count": self.worker_count,
            "throughput": [{"minute": m, "counts": dict(c)} for m, c in self.throughput],
            "failures_last_hour": self.failures_last_hour,
        }


@dataclass(frozen=True)
class WorkerInfo:
    """One registered worker process (a child of a ``taskq worker`` supervisor)."""

    id: str
    host: str
    pid: int | None
    ppid: int | None  # the supervisor's pid
    queues: tuple[str, ...]
    concurrency: int
    jobs: tuple[str, ...]  # ids of the jobs it holds (running and prefetched)
    started_at: float | None  # epoch seconds
    heartbeat_age_s: float  # on the server's clock

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "host": self.host, "pid": self.pid, "ppid": self.ppid, "queues": list(self.queues),
                "concurrency": self.concurrency, "jobs": list(self.jobs), "started_at": self.started_at,
                "heartbeat_age_s": self.heartbeat_age_s}


def _split(flat: dict[str, int]) -> dict[str, dict[str, int]]:
    """``{"name|counter": n}`` -> ``{name: {counter: n}}`` with every counter present."""
    out: dict[str, dict[str, int]] = {}
    for key, n in flat.items():
        name, _, counter = key.rpartition("|")
        out.setdefault(name, dict.fromkeys(COUNTERS, 0))[counter] = n
    return out


def collect_stats(app: AppView, now_ms: int | None = None) -> Stats:
    """Read a snapshot of the app's namespace (summed over the queues' slots
    in the ``queue`` key layout). ``now_ms`` defaults to the server's clock."""
    now = app.backend.server_time_ms() if now_ms is None else int(now_ms)
    current = now // 60_000
    minutes = list(range(current - WINDOW_MINUTES + 1, current + 1))
    snap: dict[str, Any] = {"tasks": {}, "queues": {}, "queue_names": [], "workers": [], "minutes": [],
                            "scheduled": 0, "stalled": 0, "failed": 0}
    hists: dict[str, dict[str, int]] = {}
    figures: dict[str, tuple[dict[int, int], int | None]] = {}
    paused: dict[str, bool] = {}
    held: dict[str, int] = {}
    seen_workers: dict[str, int] = {}
    active = 0
    for b in app.slots.all():
        part = b.stats_snapshot(minutes)
        for key in ("tasks", "queues"):
            for name, n in part[key].items():
                snap[key][name] = snap[key].get(name, 0) + n
        for key in ("scheduled", "stalled", "failed"):
            snap[key] += part[key]
        snap["minutes"] = part["minutes"] if not snap["minutes"] else [
            {f: a.get(f, 0) + c.get(f, 0) for f in {*a, *c}} for a, c in zip(snap["minutes"], part["minutes"])]
        names = sorted({k.rpartition("|")[0] for k in part["tasks"]})
        for name, fields in zip(names, b.histograms(names)):
            into = hists.setdefault(name, {})
            for f, n in fields.items():
                into[f] = into.get(f, 0) + n
        qnames = sorted({k.rpartition("|")[0] for k in part["queues"]} | set(part["queue_names"]))
        figures.update(b.queue_figures(qnames))
        paused.update(b.paused_queues(qnames))
        held.update(b.held_counts(qnames))
        fresh = [w for w, _ in part["workers"] if w not in seen_workers]
        active += sum(b.worker_job_counts([w for w, _ in part["workers"]]))
        seen_workers.update({w: hb for w, hb in part["workers"] if w in fresh})
    snap["workers"] = list(seen_workers.items())

    per_task = _split(snap["tasks"])
    names = sorted(per_task)
    tasks = {n: TaskStats(n, per_task[n], RunTime.from_fields(hists.get(n, {}))) for n in names}

    per_queue = _split(snap["queues"])
    queue_names = sorted(figures)
    queues = {}
    for q in queue_names:
        levels, oldest = figures[q]
        latency = max(0.0, (now - oldest) / 1000) if oldest is not None and levels else 0.0
        queues[q] = QueueStats(q, sum(levels.values()), levels, latency,
                               per_queue.get(q, dict.fromkeys(COUNTERS, 0)), paused=paused[q], held=held[q])

    workers = snap["workers"]
    # minute buckets hold namespace counters ("failed") and per-queue ones ("q:<queue>|failed")
    buckets = [({f: n for f, n in h.items() if not f.startswith("q:")},
                _split({f[2:]: n for f, n in h.items() if f.startswith("q:")})) for h in snap["minutes"]]
    last_full = buckets[-2][1] if len(buckets) > 1 else {}
    for q in queue_names:
        queues[q] = replace(queues[q], last_minute=last_full.get(q, {}))
    throughput = [(m * 60, counts) for m, (counts, _) in zip(minutes, buckets)]
    return Stats(
        namespace=app.settings.namespace, now_ms=now, tasks=tasks, queues=queues,
        scheduled=snap["scheduled"], active=active,
        stalled=snap["stalled"], failed=snap["failed"], worker_count=len(workers),
        throughput=throughput, failures_last_hour=sum(c.get("failed", 0) for _, c in throughput),
    )


def _int(raw: bytes | None) -> int | None:
    try:
        return int(raw) if raw else None
    except ValueError:
        return None


def collect_workers(app: AppView) -> list[WorkerInfo]:
    """Every worker in the registry, most recent heartbeat first. A worker
    whose process died stays listed (with a growing heartbeat age) until a
    reaper returns its jobs."""
    now = app.backend.server_time_ms()
    found: dict[str, tuple[int, dict[bytes, bytes], list[bytes]]] = {}
    for b in app.slots.all():  # in the queue key layout a worker is listed in each slot it serves
        slot_rows = b.workers()
        for (wid, hb), (info, jobs) in zip(slot_rows, b.worker_details([w for w, _ in slot_rows])):
            had = found.get(wid)
            found[wid] = (max(hb, had[0]), had[1] or info, had[2] + jobs) if had else (hb, info, jobs)
    rows = sorted(((w, v[0]) for w, v in found.items()), key=lambda r: (-r[1], r[0]))
    out = []
    for wid, hb in rows:
        _, info, jobs = found[wid]
        h = {k.decode(): v.decode("utf-8", "replace") for k, v in info.items()}
        try:
            started = float(h["started"]) if h.get("started") else None
        except ValueError:
            started = None
        out.append(WorkerInfo(
            id=wid, host=h.get("host", ""), pid=_int(info.get(b"pid")), ppid=_int(info.get(b"ppid")),
            queues=tuple(q for q in h.get("queues", "").split(",") if q),
            concurrency=_int(info.get(b"concurrency")) or 1, jobs=tuple(j.decode() for j in jobs),
            started_at=started, heartbeat_age_s=max(0.0, (now - hb) / 1000),
        ))
    return out
