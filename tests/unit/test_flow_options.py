"""The flow-control flags are validated in TaskOptions, and the enqueue
builds each job's spec from them (taskq/enqueue.py)."""

from __future__ import annotations

import datetime as dt

import pytest

from taskq import ConfigurationError
from taskq.enqueue import JobBuilder
from taskq.options import AppSettings, TaskOptions


@pytest.mark.parametrize("given, expected", [
    ("100/s", (100, 1.0)), ("10/m", (10, 60.0)), ("1000/h", (1000, 3600.0)), ((5, 2), (5, 2.0)),
    ((3, dt.timedelta(minutes=1)), (3, 60.0)), (None, None),
])
def test_rate_limit_forms(given, expected):
    assert TaskOptions(rate_limit=given).rate_limit == expected


@pytest.mark.parametrize("flags, words", [
    ({"rate_limit": "100/d"}, "'100/s'"), ({"rate_limit": "x/s"}, "'100/s'"), ({"rate_limit": (0, 1)}, ">= 1"),
    ({"rate_limit": (1, 0)}, "at least 1 ms"), ({"rate_limit": 5}, "pair"), ({"rate_burst": 0}, "rate_burst"),
    ({"concurrency": 0}, "concurrency"), ({"concurrency": True}, "concurrency"),
    ({"resource_limit": None}, "resource_limit"), ({"rate_limit_key": ""}, "rate_limit_key"),
    ({"expires": dt.datetime(2030, 1, 1)}, "timezone-aware"), ({"expires": -1}, "expires"),
])
def test_bad_flow_flags_are_refused_with_a_clear_error(flags, words):
    with pytest.raises(ConfigurationError, match=words):
        TaskOptions(**flags)


def spec(options, call=None, args=(), kwargs=None, res=None):
    job = JobBuilder(AppSettings(), "t", options, call or {}).build(args, kwargs or {}, resource=res)
    return job.flow


def test_a_job_spec_carries_only_what_is_set():
    assert spec(TaskOptions()) == ""
    assert spec(TaskOptions(rate_limit="10/s")) == "|10|1000||||"
    assert spec(TaskOptions(rate_limit=(3, 1.5), rate_burst=2, concurrency=4)) == "|3|1500|2|4||"
    assert spec(TaskOptions(expires=dt.timedelta(seconds=2))) == "+2000||||||"
    when = dt.datetime(2030, 1, 1, tzinfo=dt.UTC)
    assert spec(TaskOptions(expires=when)) == f"{int(when.timestamp() * 1000)}||||||"
    assert spec(TaskOptions(resource_limit=3), res="db") == "|||||3|"
    assert spec(TaskOptions(resource_limit=3)) == ""  # no resource: no semaphore


def test_a_rate_limit_key_comes_from_the_arguments_or_the_call():
    opts = TaskOptions(rate_limit="1/s", rate_limit_key=lambda customer: f"c:{customer}")
    assert spec(opts, args=("a|b",)) == "|1|1000||||c:a|b"
    assert spec(opts.merged({"rate_limit_key": "vip"}), call={"rate_limit_key": "vip"}) == "|1|1000||||vip"
    with pytest.raises(ConfigurationError, match="per call must be a string"):
        spec(opts, call={"rate_limit_key": lambda: "x"})
    bad = TaskOptions(rate_limit="1/s", rate_limit_key=lambda: 3)
    with pytest.raises(ConfigurationError, match="non-empty string"):
        spec(bad)
