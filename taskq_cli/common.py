"""Helpers shared by the command modules."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import Any

import click

from taskq import TaskQ
from taskq.errors import TaskQError

from .loader import load_app

APP_HELP = "The app as MODULE[:ATTR] (default: $TASKQ_APP)."


def friendly(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn taskq errors into one clear line and a non-zero exit (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except TaskQError as exc:
            raise click.ClickException(f"{type(exc).__name__}: {exc}") from None

    return wrapper


def app_argument(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.argument("app", required=False, envvar="TASKQ_APP", metavar="APP")(fn)


def app_option(fn: Callable[..., Any]) -> Callable[..., Any]:
    return click.option("-A", "--app", "app", envvar="TASKQ_APP", help=APP_HELP)(fn)


def emit_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str, sort_keys=True))


def resolve_app(app: str | None) -> TaskQ:
    return load_app(app)
