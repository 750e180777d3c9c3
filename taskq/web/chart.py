"""The throughput chart: bars per minute, laid out here and drawn as inline
SVG by the template (so it shows without JavaScript)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

WIDTH = 720
HEIGHT = 140
GAP = 2


@dataclass(frozen=True)
class Bar:
    x: float
    width: float
    ok_y: float  # succeeded part: from ok_y down to the baseline
    ok_h: float
    fail_y: float  # failed part, stacked on top
    fail_h: float
    title: str  # tooltip text


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    bars: list[Bar]
    peak: int  # the largest per-minute count, the top of the scale
    total_ok: int
    total_failed: int
    first: str  # label of the first minute (HH:MM UTC)
    last: str


def throughput_chart(throughput: list[tuple[int, dict[str, int]]]) -> Chart:
    """Succeeded and failed jobs per minute, oldest first (the last minute is partial)."""
    counts = [(m, c.get("succeeded", 0), c.get("failed", 0)) for m, c in throughput]
    peak = max((ok + bad for _, ok, bad in counts), default=0)
    scale = (HEIGHT - 4) / peak if peak else 0.0
    step = WIDTH / max(len(counts), 1)
    bars = []
    for i, (minute, ok, bad) in enumerate(counts):
        ok_h, fail_h = ok * scale, bad * scale
        label = dt.datetime.fromtimestamp(minute, dt.UTC).strftime("%H:%M")
        bars.append(Bar(x=round(i * step, 1), width=round(max(step - GAP, 1), 1),
                        ok_y=round(HEIGHT - ok_h, 1), ok_h=round(ok_h, 1),
                        fail_y=round(HEIGHT - ok_h - fail_h, 1), fail_h=round(fail_h, 1),
                        title=f"{label} UTC: {ok} succeeded, {bad} failed"))

    def label_of(k: int) -> str:
        return dt.datetime.fromtimestamp(counts[k][0], dt.UTC).strftime("%H:%M") if counts else ""

    return Chart(width=WIDTH, height=HEIGHT, bars=bars, peak=peak, total_ok=sum(c[1] for c in counts),
                 total_failed=sum(c[2] for c in counts), first=label_of(0), last=label_of(-1))
