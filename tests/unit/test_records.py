"""The job hash's field names live in one place per language: the Lua
prelude's legend and ``taskq.storage.records.Field`` must agree."""

from __future__ import annotations

import re
from pathlib import Path

from taskq.storage.records import JOB_FIELDS, EnqueueRequest, Field, JobRecord

LIB = Path(__file__).resolve().parents[2] / "taskq" / "storage" / "lua" / "_lib.lua"


def lua_legend() -> set[str]:
    """The field names the Lua prelude lists under "Job hash fields"."""
    lines = LIB.read_text().splitlines()
    start = next(i for i, ln in enumerate(lines) if "Job hash fields" in ln) + 1
    names = set()
    for ln in lines[start:]:
        body = ln.removeprefix("--").strip()
        if not body or body.startswith("("):
            break
        names |= {chunk.split()[0] for chunk in re.split(r"\s{2,}", body) if chunk}
    return names


def test_the_lua_prelude_and_python_name_the_same_job_fields():
    assert lua_legend() == set(JOB_FIELDS.values())
    assert len(set(JOB_FIELDS.values())) == len(JOB_FIELDS)  # no two names for one field


def test_every_field_the_scripts_write_is_named():
    written = set()
    for path in LIB.parent.glob("*.lua"):
        for call in re.findall(r"'HSET', jk, ([^)]*)\)", path.read_text()):
            args = [a.strip() for a in call.split(",")]
            written |= {a.strip("'") for a in args[::2] if re.fullmatch(r"'[a-z]+'", a)}  # field, value, ...
    assert written, "no HSET found: the pattern needs updating"
    assert written <= set(JOB_FIELDS.values()), written - set(JOB_FIELDS.values())


def test_a_record_from_a_hash_has_typed_values_and_none_for_no_job():
    h = {b"s": b"failed", b"t": b"t\xc3\xa9", b"q": b"q", b"p": b"-10", b"d": b"\x92\x90\x80", b"c": b"1700000000000",
         b"a": b"2", b"lc": b"1", b"k": b"7", b"cr": b"1", b"rq": b"garbled"}
    rec = JobRecord.from_hash("j1", h)
    assert rec is not None
    assert (rec.state, rec.task, rec.priority, rec.created_ms, rec.attempts, rec.lost_count, rec.token) == (
        "failed", "té", -10, 1_700_000_000_000, 2, 1, 7)
    assert rec.cancel_requested and rec.requeue_count == 0 and rec.started_ms is None and rec.worker is None
    assert JobRecord.from_hash("j2", {}) is None
    assert JobRecord.from_hash("j3", {Field.TASK: b"x"}) is None  # a hash without a state holds no job


def test_an_enqueue_request_is_the_scripts_field_order():
    assert EnqueueRequest._fields[:5] == ("id", "task", "queue", "priority", "payload")
    assert len(EnqueueRequest._fields) == 16


def test_the_minute_buckets_expire_after_the_same_time_in_lua_and_python():
    from taskq.storage.keys import MINUTE_BUCKET_TTL_MS

    assert f"local MINUTE_TTL_MS = {MINUTE_BUCKET_TTL_MS}\n" in LIB.read_text()
    for path in LIB.parent.glob("*.lua"):
        assert "7200000" not in path.read_text().replace(f"= {MINUTE_BUCKET_TTL_MS}", ""), path
