"""The text of ``taskq status``: one screen from a stats snapshot (pure)."""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence

from .stats import COUNTERS, FINISHING, Stats, WorkerInfo

COUNTER_HEADERS = {
    "enqueued": "ENQ", "started": "START", "succeeded": "OK", "failed": "FAIL", "retried": "RETRY",
    "timed_out": "TIMEOUT", "skipped": "SKIP", "cancelled": "CANCEL", "requeued": "REQUEUE", "retracted": "RETRACT",
    "lost": "LOST", "expired": "EXPIRED",
}


def duration(seconds: float | None) -> str:
    """A short human duration: 850ms, 2.5s, 3m05s, 2h10m; "-" for None."""
    if seconds is None:
        return "-"
    if math.isinf(seconds):
        return ">300s"
    if seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def run_time(value: float | None) -> str:
    """A run time in ms; under 1 ms shows as "<1ms" (sums are kept in whole ms)."""
    if value is not None and value < 1:
        return "<1ms"
    return duration(None if value is None else value / 1000)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], left: Sequence[int] = (0,)) -> list[str]:
    """Columns sized to their content: those in ``left`` left-aligned, the rest right-aligned."""
    cells = [list(map(str, headers))] + [[str(c) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    out = []
    for r in cells:
        parts = [c.ljust(w) if i in left else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append("  ".join(parts).rstrip())
    return out


def _rate(now: dict[str, int], before: dict[str, int], minutes: float, names: Sequence[str]) -> str:
    n = sum(now.get(c, 0) - before.get(c, 0) for c in names)
    return f"{max(n, 0) / minutes:.1f}"


def render_status(stats: Stats, workers: Sequence[WorkerInfo], previous: Stats | None = None) -> str:
    """The ``taskq status`` screen. Queues show their in/out rates over the last
    complete minute, or, with ``previous`` (an earlier snapshot, as in
    ``--watch``), per minute since then."""
    when = dt.datetime.fromtimestamp(stats.now_ms / 1000, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    lines = [
        f"taskq  namespace {stats.namespace}  {when}",
        f"jobs: {stats.ready} ready  {stats.scheduled} scheduled  {stats.active} active  "
        f"{stats.stalled} stalled  {stats.failed} failed",
        f"workers: {stats.worker_count}  failures in the last hour: {stats.failures_last_hour}",
        "",
    ]

    if stats.queues:
        elapsed = (stats.now_ms - previous.now_ms) / 60_000 if previous is not None else 0.0
        headers = ["QUEUE", "READY", "LATENCY", "LEVELS", "IN/MIN", "OUT/MIN"]
        flow = any(q.paused or q.held for q in stats.queues.values())  # columns shown when they say something
        if flow:
            headers += ["HELD", "PAUSED"]
        rows = []
        for name, q in sorted(stats.queues.items()):
            levels = " ".join(f"{p}:{n}" for p, n in sorted(q.levels.items(), reverse=True)) or "-"
            row: list[object] = [name, q.depth, duration(q.latency_s) if q.depth else "-", levels]
            if elapsed > 0:  # --watch: rates since the previous screen
                assert previous is not None
                before = previous.queues[name].counters if name in previous.queues else {}
                row += [_rate(q.counters, before, elapsed, ("enqueued",)),
                        _rate(q.counters, before, elapsed, FINISHING)]
            else:  # the last complete minute
                row += [q.rate_in, q.rate_out]
            if flow:
                row += [q.held, "paused" if q.paused else "no"]
            rows.append(row)
        lines += table(headers, rows, left=(0, 3))
    else:
        lines.append("no queues")
    lines.append("")

    if workers:
        lines += table(["WORKER", "HOST", "PID", "SUPERVISOR", "QUEUES", "JOBS", "HEARTBEAT"], [
            [w.id, w.host or "-", w.pid or "-", w.ppid or "-", ",".join(w.queues) or "-", len(w.jobs),
             f"{duration(w.heartbeat_age_s)} ago"]
            for w in workers
        ], left=(0, 1, 4))
    else:
        lines.append("no workers")
    lines.append("")

    if stats.tasks:
        # a column for expired jobs only once some task has them
        names = [c for c in COUNTERS if c != "expired" or any(t.counters.get(c) for t in stats.tasks.values())]
        lines += table(["TASK", *(COUNTER_HEADERS[c] for c in names), "MEAN", "P95"], [
            [name, *(t.counters.get(c, 0) for c in names), run_time(t.run_time.mean_ms), run_time(t.run_time.p95_ms)]
            for name, t in sorted(stats.tasks.items())
        ])
    else:
        lines.append("no tasks have run")

    hour: dict[str, int] = {}
    for _, counts in stats.throughput:
        for c, n in counts.items():
            hour[c] = hour.get(c, 0) + n
    shown = [c for c in COUNTERS if hour.get(c)]
    if shown:
        this_min = stats.throughput[-1][1] if stats.throughput else {}
        last_min = stats.throughput[-2][1] if len(stats.throughput) > 1 else {}
        lines.append("")
        lines += table(["THROUGHPUT", "THIS MIN", "LAST MIN", "LAST 60 MIN"], [
            [c, this_min.get(c, 0), last_min.get(c, 0), hour[c]] for c in shown
        ])
    return "\n".join(lines) + "\n"
