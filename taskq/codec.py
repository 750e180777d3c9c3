"""msgpack encoding of arguments and results (never pickle).

Supported: None, bool, int, float, str, bytes, list/tuple (decoded as
list), dict, plus these as msgpack extension types: ``datetime`` (naive or
aware), ``date``, ``time``, ``timedelta``, ``UUID`` and ``Decimal``.
Anything else raises ``TypeError`` naming the argument at enqueue time.
"""

from __future__ import annotations

import datetime as dt
import decimal
import uuid
from typing import Any

import msgpack

_DATETIME, _DATE, _UUID, _DECIMAL, _TIME, _TIMEDELTA = 1, 2, 3, 4, 5, 6


def _default(obj: Any) -> msgpack.ExtType:
    if isinstance(obj, dt.datetime):
        return msgpack.ExtType(_DATETIME, obj.isoformat().encode())
    if isinstance(obj, dt.date):
        return msgpack.ExtType(_DATE, obj.isoformat().encode())
    if isinstance(obj, dt.time):
        return msgpack.ExtType(_TIME, obj.isoformat().encode())
    if isinstance(obj, dt.timedelta):
        return msgpack.ExtType(_TIMEDELTA, msgpack.packb([obj.days, obj.seconds, obj.microseconds]))
    if isinstance(obj, uuid.UUID):
        return msgpack.ExtType(_UUID, obj.bytes)
    if isinstance(obj, decimal.Decimal):
        return msgpack.ExtType(_DECIMAL, str(obj).encode())
    raise TypeError(f"cannot serialize object of type {type(obj).__name__}")


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _DATETIME:
        return dt.datetime.fromisoformat(data.decode())
    if code == _DATE:
        return dt.date.fromisoformat(data.decode())
    if code == _TIME:
        return dt.time.fromisoformat(data.decode())
    if code == _TIMEDELTA:
        days, seconds, micros = msgpack.unpackb(data)
        return dt.timedelta(days=days, seconds=seconds, microseconds=micros)
    if code == _UUID:
        return uuid.UUID(bytes=data)
    if code == _DECIMAL:
        return decimal.Decimal(data.decode())
    raise ValueError(f"unknown msgpack extension type {code}")


_packer = msgpack.Packer(default=_default, use_bin_type=True, datetime=False)


def dumps(value: Any) -> bytes:
    """Encode one value."""
    try:
        out: bytes = _packer.pack(value)
        return out
    except Exception:
        _packer.reset()
        raise


def _frozen(key: Any) -> Any:
    return tuple(_frozen(k) for k in key) if isinstance(key, list) else key


def _tuple_keys(pairs: list[tuple[Any, Any]]) -> dict[Any, Any]:
    return {_frozen(k): v for k, v in pairs}


def loads(data: bytes) -> Any:
    """Decode one value (strict: trailing bytes or garbage raise ValueError).
    A map keyed by tuples (encoded as arrays) gets its tuple keys back."""
    try:
        try:
            return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)
        except TypeError as exc:
            if "unhashable" not in str(exc):
                raise
            return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False,
                                   object_pairs_hook=_tuple_keys)
    except Exception as exc:  # garbage may fail anywhere, an extension hook included
        raise ValueError(f"undecodable payload: {str(exc) or 'not valid msgpack (' + type(exc).__name__ + ')'}") from None


def encode_args(args: tuple[Any, ...] | list[Any], kwargs: dict[str, Any]) -> bytes:
    """Encode a call's arguments; a value msgpack cannot encode raises
    ``TypeError`` naming the argument."""
    try:
        return dumps([list(args), kwargs])
    except (TypeError, ValueError, OverflowError) as exc:
        for i, value in enumerate(args):
            _check(value, f"positional argument {i}")
        for name, value in kwargs.items():
            _check(value, f"argument {name!r}")
        raise TypeError(f"arguments cannot be serialized: {exc}") from None


def _check(value: Any, label: str) -> None:
    try:
        dumps(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise TypeError(f"{label} cannot be serialized with msgpack: {exc}") from None


def decode_args(data: bytes) -> tuple[list[Any], dict[str, Any]]:
    """Decode a payload into (args, kwargs); raise ValueError if malformed."""
    value = loads(data)
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not isinstance(value[0], list)
        or not isinstance(value[1], dict)
        or not all(isinstance(k, str) for k in value[1])
    ):
        raise ValueError("undecodable payload: expected [args, kwargs]")
    return value[0], value[1]


def without_first_arg(data: bytes) -> bytes:
    """The payload with its first positional argument cut out, byte for byte:
    the inverse of the server putting a workflow value in front (see
    ``prepend_arg`` in storage/lua/_lib.lua). ValueError if it has none."""
    if len(data) < 3 or data[0] != 0x92:
        raise ValueError("undecodable payload: expected [args, kwargs]")
    head = data[1]
    if 0x91 <= head <= 0x9F:
        n, at = head - 0x90, 2
    elif head == 0xDC:
        n, at = int.from_bytes(data[2:4], "big"), 4
    elif head == 0xDD:
        n, at = int.from_bytes(data[4:6], "big") + (int.from_bytes(data[2:4], "big") << 16), 6
    else:
        raise ValueError("undecodable payload: no first argument")
    unpacker = msgpack.Unpacker(raw=True, strict_map_key=False)
    unpacker.feed(data[at:])
    unpacker.skip()
    rest = data[at + unpacker.tell():]
    m = n - 1
    header = bytes([0x90 + m]) if m < 16 else (b"\xdc" + m.to_bytes(2, "big") if m < 65536
                                              else b"\xdd" + m.to_bytes(4, "big"))
    return b"\x92" + header + rest
