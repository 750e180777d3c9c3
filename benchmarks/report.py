"""Rows of the result table: medians with spread, the raw floor, the ratio
and a target (printed, never asserted)."""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from dataclasses import dataclass, field


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, ``q`` in 0..100."""
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    rank = max(1, -(-len(ordered) * q // 100))  # ceil
    return ordered[int(rank) - 1]


def fmt(value: float) -> str:
    if value != value:  # nan
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 100:
        return f"{value:.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    if abs(value) >= 1:
        return f"{value:.2f}"
    return f"{value:.2g}"


def spread(values: Sequence[float]) -> str:
    if not values:
        return "-"
    return f"{fmt(statistics.median(values))} [{fmt(min(values))}–{fmt(max(values))}]"


@dataclass(frozen=True)
class Target:
    """``kind``: ``ratio>=``/``ratio<=`` (taskq/raw) or ``>=``/``<=`` (taskq's median)."""

    kind: str
    value: float
    unit: str = ""

    def describe(self) -> str:
        op = "≥" if self.kind.endswith(">=") else "≤"
        if self.kind.startswith("ratio"):
            return f"{op}{self.value:g}× raw"
        return f"{op}{fmt(self.value)} {self.unit}".rstrip()

    def met(self, taskq: float, ratio: float | None) -> bool | None:
        x = ratio if self.kind.startswith("ratio") else taskq
        if x is None or x != x:
            return None
        return x >= self.value if self.kind.endswith(">=") else x <= self.value


@dataclass
class Row:
    figure: str
    metric: str
    unit: str
    taskq: list[float]
    raw: list[float] = field(default_factory=list)
    target: Target | None = None
    show_ratio: bool = True

    @property
    def ratio(self) -> float | None:
        if not (self.show_ratio and self.taskq and self.raw):
            return None
        raw = statistics.median(self.raw)
        return statistics.median(self.taskq) / raw if raw else None

    def cells(self) -> list[str]:
        ratio = self.ratio
        verdict = ""
        if self.target is not None and self.taskq:
            met = self.target.met(statistics.median(self.taskq), ratio)
            verdict = {True: "met", False: "MISSED", None: "?"}[met]
        return [
            self.figure,
            f"{self.metric} ({self.unit})" if self.unit else self.metric,
            spread(self.taskq),
            spread(self.raw),
            f"{ratio:.2f}×" if ratio is not None else "-",
            self.target.describe() if self.target else "-",
            verdict,
        ]


HEADER = ["figure", "metric", "taskq median [min–max]", "raw floor median [min–max]", "taskq/raw",
          "target", ""]


def table(rows: Sequence[Row]) -> str:
    grid = [HEADER, *(r.cells() for r in rows)]
    widths = [max(len(line[i]) for line in grid) for i in range(len(HEADER))]
    out = []
    for n, line in enumerate(grid):
        out.append("  ".join(cell.ljust(w) for cell, w in zip(line, widths)).rstrip())
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)
