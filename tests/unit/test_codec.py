from __future__ import annotations

import datetime as dt
import decimal
import uuid

import pytest

from taskq import codec


@pytest.mark.parametrize("value", [
    None, True, 1, -2**63, 1.5, "héllo", b"\x00\xff", [1, [2]], {"a": {"b": 1}},
    dt.datetime(2030, 1, 2, 3, 4, 5, 6), dt.datetime(2030, 1, 2, tzinfo=dt.timezone(dt.timedelta(hours=2))),
    dt.date(2030, 1, 2), dt.time(1, 2, 3), dt.timedelta(days=1, seconds=2, microseconds=3),
    uuid.UUID("12345678-1234-5678-1234-567812345678"), decimal.Decimal("1.10"),
])
def test_supported_types_round_trip(value):
    assert codec.loads(codec.dumps(value)) == value


def test_tuples_arrive_as_lists():
    assert codec.decode_args(codec.encode_args((1, (2, 3)), {})) == ([1, [2, 3]], {})


def test_a_dict_keyed_by_tuples_reaches_the_task():
    """{(x, y): v} was accepted at enqueue and every attempt failed in the
    worker as "undecodable payload: unhashable type: 'list'"."""
    grid = {(0, 1): "a", (2, (3, 4)): "b"}
    payload = codec.encode_args((grid,), {"by_cell": {(5, 6): 7}})
    assert codec.decode_args(payload) == ([grid], {"by_cell": {(5, 6): 7}})
    assert codec.loads(codec.dumps({"result": {("x", 1): 2}})) == {"result": {("x", 1): 2}}


def test_unencodable_argument_is_named():
    with pytest.raises(TypeError, match="argument 'when'"):
        codec.encode_args((), {"when": object()})
    with pytest.raises(TypeError, match="positional argument 1"):
        codec.encode_args((1, {1, 2}), {})


@pytest.mark.parametrize("data", [b"", b"\xc1", codec.dumps([1, 2]), codec.dumps({"a": 1}), codec.dumps([[], {1: 2}])])
def test_malformed_payloads_raise_value_error(data):
    with pytest.raises(ValueError, match="undecodable payload"):
        codec.decode_args(data)
