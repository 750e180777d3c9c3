"""Helpers shared by the command modules."""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Callable
from typing import Any

import click

from taskq import TaskQ
from taskq.errors import TaskQError

from .loader import load_app

APP_HELP = "The app as MODULE[:ATTR] (also the positional APP, or $TASKQ_APP)."


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn taskq errors into one clear line and a non-zero exit (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TaskQError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None

    return wrapper


def app_params(fn: Callable[..., Any]) -> Callable[..., Any]:
    """The app, named the same way on every command: a positional ``APP``
    (after the command's own arguments), ``-A/--app``, or ``$TASKQ_APP``.
    The command receives it as ``app``."""

    @functools.wraps(fn)
    def wrapper(*args: Any, app_arg: str | None, app_opt: str | None, **kwargs: Any) -> Any:
        if app_arg and app_opt and app_arg != app_opt:
            raise click.UsageError(f"two apps given: {app_arg!r} and -A {app_opt!r}")
        return fn(*args, app=app_opt or app_arg or os.environ.get("TASKQ_APP") or None, **kwargs)

    wrapper = click.option("-A", "--app", "app_opt", metavar="MODULE[:ATTR]", help=APP_HELP)(wrapper)
    return click.argument("app_arg", required=False, metavar="[APP]")(wrapper)


def _json_key(key: Any) -> str:
    """A map key as JSON text: JSON keys are strings (and sorting needs one type)."""
    if isinstance(key, str):
        return key
    if key is None or isinstance(key, (bool, int, float)):
        return json.dumps(key)
    return str(key)


def _plain(value: Any) -> Any:
    """``value`` with every map key a string (job arguments and results may be
    keyed by ints, tuples or bytes, or by a mix of types), and NaN and the
    infinities, which JSON has no numbers for, as None."""
    if isinstance(value, dict):
        return {_json_key(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(data: Any, indent: int | None = 2) -> str:
    """``data`` as valid JSON (NaN and infinities as null; values of other types as their ``str``)."""
    return json.dumps(_plain(data), indent=indent, default=str, sort_keys=True, allow_nan=False)


def emit_json(data: Any) -> None:
    click.echo(json_text(data))


def resolve_app(app: str | None) -> TaskQ:
    return load_app(app)
