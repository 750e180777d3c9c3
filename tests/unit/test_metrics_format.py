"""Prometheus exposition and the ``taskq status`` screen, from snapshots built
by hand (no server). ``parse_exposition`` is a small strict parser of the
text format 0.0.4, also used by the tests that scrape a live endpoint."""

from __future__ import annotations

import json
import math
import re
from typing import Any

import pytest

from taskq.metrics import render_prometheus
from taskq.stats import COUNTERS, QueueStats, RunTime, Stats, TaskStats, WorkerInfo
from taskq.status_text import duration, render_status

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL_VALUE = r'"(?:[^"\\\n]|\\[\\"n])*"'
LABELS = rf"\{{(?:[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE}(?:,[a-zA-Z_][a-zA-Z0-9_]*={LABEL_VALUE})*)?\}}"
VALUE = r"(?:[+-]?(?:\d+\.?\d*(?:[eE][+-]?\d+)?|\.\d+(?:[eE][+-]?\d+)?)|[+-]Inf|NaN)"
SAMPLE = re.compile(rf"^({NAME})({LABELS})? ({VALUE})(?: -?\d+)?$")
ONE_LABEL = re.compile(rf'([a-zA-Z_][a-zA-Z0-9_]*)=({LABEL_VALUE})')
HELP = re.compile(rf"^# HELP ({NAME}) (.*)$")
TYPE = re.compile(rf"^# TYPE ({NAME}) (counter|gauge|histogram|summary|untyped)$")
SUFFIXES = {"histogram": ("_bucket", "_sum", "_count"), "summary": ("", "_sum", "_count")}


def _unescape(quoted: str) -> str:
    return re.sub(r"\\(.)", lambda m: {"n": "\n"}.get(m.group(1), m.group(1)), quoted[1:-1])


def parse_exposition(text: str) -> dict[str, dict[str, Any]]:
    """Parse and check Prometheus text: every line well formed, every sample
    in a family whose TYPE came first (families contiguous, declared once),
    histogram buckets cumulative and ending with +Inf == _count.

    Returns ``{family: {"type", "help", "samples": [(name, labels, value)]}}``."""
    assert text.endswith("\n"), "exposition must end with a newline"
    families: dict[str, dict[str, Any]] = {}
    current: str | None = None
    for line in text.splitlines():
        assert line, "no blank lines"
        if line.startswith("#"):
            if m := HELP.match(line):
                name = m.group(1)
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                assert fam["help"] is None and not fam["samples"], f"HELP of {name} repeated or late"
                fam["help"] = m.group(2)
            elif m := TYPE.match(line):
                name = m.group(1)
                fam = families.setdefault(name, {"type": None, "help": None, "samples": []})
                assert fam["type"] is None and not fam["samples"], f"TYPE of {name} repeated or late"
                fam["type"] = m.group(2)
            else:
                assert not line.startswith(("# HELP", "# TYPE")), f"malformed line: {line!r}"
            current = name
            continue
        m = SAMPLE.match(line)
        assert m, f"malformed sample line: {line!r}"
        sample, raw_labels, raw_value = m.group(1), m.group(2) or "{}", m.group(3)
        labels = {k: _unescape(v) for k, v in ONE_LABEL.findall(raw_labels)}
        assert current is not None, f"sample before any TYPE: {line!r}"
        fam = families[current]
        assert fam["type"] is not None, f"{current} has no TYPE"
        allowed = [current + s for s in SUFFIXES.get(fam["type"], ("",))]
        assert sample in allowed, f"sample {sample} outside its family {current} (samples must be contiguous)"
        fam["samples"].append((sample, labels, float(raw_value)))
    for name, fam in families.items():
        assert fam["type"] is not None, f"{name} has no TYPE"
        if fam["type"] == "histogram":
            _check_histogram(name, fam["samples"])
    return families


def _check_histogram(name: str, samples: list[tuple[str, dict[str, str], float]]) -> None:
    series: dict[tuple[tuple[str, str], ...], dict[str, Any]] = {}
    for sample, labels, value in samples:
        key = tuple(sorted((k, v) for k, v in labels.items() if k != "le"))
        s = series.setdefault(key, {"buckets": [], "sum": None, "count": None})
        if sample.endswith("_bucket"):
            assert "le" in labels, f"{sample} without le"
            s["buckets"].append((float(labels["le"]), value))
        elif sample.endswith("_sum"):
            s["sum"] = value
        else:
            s["count"] = value
    for key, s in series.items():
        les = [le for le, _ in s["buckets"]]
        counts = [n for _, n in s["buckets"]]
        assert les == sorted(les) and len(set(les)) == len(les), f"{name}{key}: le not ascending"
        assert les and math.isinf(les[-1]), f"{name}{key}: no +Inf bucket"
        assert counts == sorted(counts), f"{name}{key}: buckets not cumulative"
        assert s["count"] == counts[-1], f"{name}{key}: +Inf bucket != _count"
        assert s["sum"] is not None, f"{name}{key}: no _sum"


def value_of(families: dict[str, dict[str, Any]], sample: str, **labels: str) -> float:
    family = next(f for n, f in families.items() if sample.startswith(n) and any(s[0] == sample for s in f["samples"]))
    found = [v for s, lab, v in family["samples"] if s == sample and lab == labels]
    assert len(found) == 1, f"{sample}{labels}: {len(found)} samples"
    return found[0]


# ---------------------------------------------------------------- a known state

NOW_MS = 1_700_000_000_000  # 2023-11-14 22:13:20 UTC
MINUTE = NOW_MS // 60_000


def counters(**kw: int) -> dict[str, int]:
    return {c: kw.get(c, 0) for c in COUNTERS}


def known_stats() -> Stats:
    email = TaskStats("send_email", counters(enqueued=7, started=6, succeeded=4, failed=1, retried=1, timed_out=1),
                      RunTime.from_fields({"le_5": 2, "le_50": 1, "le_250": 2, "le_inf": 1, "sum_ms": 400_532}))
    report = TaskStats("report", counters(enqueued=2, skipped=1, cancelled=1, requeued=3, retracted=1))
    throughput = [((MINUTE - 59 + i) * 60, {}) for i in range(60)]
    throughput[-2] = (throughput[-2][0], {"enqueued": 5, "failed": 1})
    throughput[-1] = (throughput[-1][0], {"enqueued": 4, "succeeded": 4})
    throughput[0] = (throughput[0][0], {"failed": 1})
    return Stats(
        namespace="shop", now_ms=NOW_MS,
        tasks={"send_email": email, "report": report},
        queues={
            "default": QueueStats("default", 3, {0: 1, 10: 2}, 75.25, counters(enqueued=9, succeeded=4),
                                  last_minute={"enqueued": 7, "succeeded": 3, "failed": 1}),
            "mail": QueueStats("mail", 0, {}, 0.0, counters()),
        },
        scheduled=2, active=1, stalled=0, failed=3, worker_count=1,
        throughput=throughput, failures_last_hour=2,
    )


def known_workers() -> list[WorkerInfo]:
    return [WorkerInfo(id="web1:4100:0:ab12cd", host="web1", pid=4101, ppid=4100, queues=("default", "mail"),
                       concurrency=1, jobs=("j1",), started_at=1_699_999_000.0, heartbeat_age_s=0.4)]


# ---------------------------------------------------------------- prometheus


def test_known_state_renders_every_family_with_its_values() -> None:
    fam = parse_exposition(render_prometheus(known_stats(), known_workers()))
    assert {n: f["type"] for n, f in fam.items()} == {
        "taskq_jobs_total": "counter", "taskq_queue_jobs_total": "counter",
        "taskq_job_duration_seconds": "histogram", "taskq_queue_depth": "gauge",
        "taskq_queue_latency_seconds": "gauge", "taskq_scheduled_jobs": "gauge", "taskq_active_jobs": "gauge",
        "taskq_failed_jobs": "gauge", "taskq_stalled_jobs": "gauge", "taskq_workers": "gauge",
        "taskq_queue_paused": "gauge", "taskq_queue_held": "gauge",
    }
    assert all(f["help"] for f in fam.values())
    assert value_of(fam, "taskq_jobs_total", task="send_email", outcome="timed_out") == 1
    assert value_of(fam, "taskq_jobs_total", task="report", outcome="requeued") == 3
    assert len(fam["taskq_jobs_total"]["samples"]) == 2 * len(COUNTERS)
    assert value_of(fam, "taskq_queue_jobs_total", queue="default", outcome="enqueued") == 9
    assert value_of(fam, "taskq_queue_depth", queue="default") == 3
    assert value_of(fam, "taskq_queue_depth", queue="mail") == 0
    assert value_of(fam, "taskq_queue_paused", queue="default") == 0
    assert value_of(fam, "taskq_queue_held", queue="default") == 0
    assert value_of(fam, "taskq_queue_latency_seconds", queue="default") == 75.25
    assert value_of(fam, "taskq_scheduled_jobs") == 2
    assert value_of(fam, "taskq_active_jobs") == 1
    assert value_of(fam, "taskq_failed_jobs") == 3
    assert value_of(fam, "taskq_stalled_jobs") == 0
    assert value_of(fam, "taskq_workers") == 1


def test_histogram_buckets_are_cumulative_seconds_ending_with_inf() -> None:
    text = render_prometheus(known_stats(), known_workers())
    fam = parse_exposition(text)
    buckets = {lab["le"]: v for s, lab, v in fam["taskq_job_duration_seconds"]["samples"]
               if s.endswith("_bucket") and lab["task"] == "send_email"}
    assert list(buckets) == ["0.001", "0.002", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5",
                             "5", "10", "30", "60", "300", "+Inf"]
    assert buckets["0.002"] == 0 and buckets["0.005"] == 2 and buckets["0.05"] == 3 and buckets["0.25"] == 5
    assert buckets["300"] == 5 and buckets["+Inf"] == 6
    assert value_of(fam, "taskq_job_duration_seconds_sum", task="send_email") == 400.532
    assert value_of(fam, "taskq_job_duration_seconds_count", task="send_email") == 6
    assert value_of(fam, "taskq_job_duration_seconds_count", task="report") == 0
    assert 'taskq_job_duration_seconds_bucket{task="send_email",le="+Inf"} 6\n' in text


def test_label_values_are_escaped() -> None:
    odd = 'we"ird\\task\nname'
    s = known_stats()
    stats = Stats(**{**s.__dict__, "tasks": {odd: TaskStats(odd, counters(enqueued=1))}})
    text = render_prometheus(stats, [])
    assert 'taskq_jobs_total{task="we\\"ird\\\\task\\nname",outcome="enqueued"} 1\n' in text
    fam = parse_exposition(text)
    assert value_of(fam, "taskq_jobs_total", task=odd, outcome="enqueued") == 1


def test_an_empty_namespace_renders_valid_text() -> None:
    empty = Stats(namespace="x", now_ms=NOW_MS, tasks={}, queues={}, scheduled=0, active=0, stalled=0, failed=0,
                  worker_count=0, throughput=[], failures_last_hour=0)
    fam = parse_exposition(render_prometheus(empty, []))
    assert fam["taskq_jobs_total"]["samples"] == []
    assert value_of(fam, "taskq_workers") == 0


def test_the_parser_rejects_malformed_text() -> None:
    with pytest.raises(AssertionError):
        parse_exposition("taskq_x 1\n")  # no TYPE
    with pytest.raises(AssertionError):
        parse_exposition('# TYPE a counter\na{l="x} 1\n')
    with pytest.raises(AssertionError):
        parse_exposition('# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_sum 1\nh_count 1\n')


# ---------------------------------------------------------------- run time


def test_quantiles_are_upper_bounds_of_their_buckets() -> None:
    rt = known_stats().tasks["send_email"].run_time
    assert rt.count == 6 and rt.sum_ms == 400_532
    assert rt.mean_ms == pytest.approx(400_532 / 6)
    assert rt.p50_ms == 50  # 3rd of 6 runs is in the (25, 50] bucket
    assert rt.p95_ms == math.inf  # the 6th run took over 300 s
    assert rt.quantile(0.8) == 250
    assert RunTime().p50_ms is None and RunTime().mean_ms is None
    d = rt.as_dict()
    assert d["p99_ms"] == "+Inf" and d["p50_ms"] == 50 and d["buckets"]["+Inf"] == 6 and d["buckets"]["5"] == 2


def test_as_dict_is_plain_json() -> None:
    d = known_stats().as_dict()
    assert json.loads(json.dumps(d, allow_nan=False)) == d
    assert d["ready"] == 3
    assert d["queues"]["default"]["levels"] == {"10": 2, "0": 1}
    assert d["throughput"][-1] == {"minute": MINUTE * 60, "counts": {"enqueued": 4, "succeeded": 4}}
    w = known_workers()[0].as_dict()
    assert json.loads(json.dumps(w)) == w


# ---------------------------------------------------------------- status screen


def test_status_screen_of_a_known_state() -> None:
    assert render_status(known_stats(), known_workers()).splitlines() == [
        "taskq  namespace shop  2023-11-14 22:13:20 UTC",
        "jobs: 3 ready  2 scheduled  1 active  0 stalled  3 failed",
        "workers: 1  failures in the last hour: 2",
        "",
        "QUEUE    READY  LATENCY  LEVELS    IN/MIN  OUT/MIN",
        "default      3    1m15s  10:2 0:1       7        4",
        "mail         0        -  -              0        0",
        "",
        "WORKER              HOST   PID  SUPERVISOR  QUEUES        JOBS  HEARTBEAT",
        "web1:4100:0:ab12cd  web1  4101        4100  default,mail     1  400ms ago",
        "",
        "TASK        ENQ  START  OK  FAIL  RETRY  TIMEOUT  SKIP  CANCEL  REQUEUE  RETRACT  LOST   MEAN    P95",
        "report        2      0   0     0      0        0     1       1        3        1     0      -      -",
        "send_email    7      6   4     1      1        1     0       0        0        0     0  1m06s  >300s",
        "",
        "THROUGHPUT  THIS MIN  LAST MIN  LAST 60 MIN",
        "enqueued           4         5            9",
        "succeeded          4         0            4",
        "failed             0         1            2",
    ]


def test_status_screen_with_a_previous_snapshot_shows_queue_rates() -> None:
    before = known_stats()
    earlier = Stats(**{**before.__dict__, "now_ms": NOW_MS - 30_000, "queues": {
        "default": QueueStats("default", 5, {0: 5}, 1.0, counters(enqueued=6, succeeded=2, failed=0)),
    }})
    lines = render_status(before, [], earlier).splitlines()
    assert lines[4:8] == [
        "QUEUE    READY  LATENCY  LEVELS    IN/MIN  OUT/MIN",
        "default      3    1m15s  10:2 0:1     6.0      4.0",
        "mail         0        -  -            0.0      0.0",
        "",
    ]
    assert lines[8] == "no workers"


def test_status_screen_of_an_empty_namespace() -> None:
    empty = Stats(namespace="x", now_ms=NOW_MS, tasks={}, queues={}, scheduled=0, active=0, stalled=0, failed=0,
                  worker_count=0, throughput=[], failures_last_hour=0)
    assert render_status(empty, []).splitlines()[3:] == ["", "no queues", "", "no workers", "", "no tasks have run"]


@pytest.mark.parametrize("seconds,text", [
    (None, "-"), (0.0004, "0ms"), (0.85, "850ms"), (2.54, "2.5s"), (185, "3m05s"), (7800, "2h10m"), (math.inf, ">300s"),
])
def test_duration_formatting(seconds: float | None, text: str) -> None:
    assert duration(seconds) == text
