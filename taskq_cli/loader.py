"""Import the user's app from ``module:attr`` (or ``module``)."""

from __future__ import annotations

import importlib
import os
import sys

import click

from taskq import TaskQ


def load_app(path: str | None, include: tuple[str, ...] = ()) -> TaskQ:
    if not path:
        raise click.UsageError("no app given: pass MODULE[:ATTR] or set TASKQ_APP")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    module_name, _, attr = path.partition(":")
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # any error while importing the user's module
        raise click.ClickException(
            f"cannot import module {module_name!r}: {type(exc).__name__}: {exc}"
        ) from None
    if attr:
        app = getattr(module, attr, None)
        if not isinstance(app, TaskQ):
            what = "does not exist" if app is None else f"is a {type(app).__name__}, not a TaskQ"
            raise click.ClickException(f"{module_name}:{attr} {what}")
    else:
        found = [v for v in vars(module).values() if isinstance(v, TaskQ)]
        if len(found) != 1:
            raise click.ClickException(
                f"module {module_name!r} has {len(found)} TaskQ instances; name one as {module_name}:ATTR"
            )
        app = found[0]
    for name in (*app.settings.include, *include):
        try:
            importlib.import_module(name)
        except Exception as exc:
            raise click.ClickException(f"cannot import task module {name!r}: {type(exc).__name__}: {exc}") from None
    return app
