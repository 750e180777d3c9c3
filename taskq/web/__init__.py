"""The web dashboard: ``create_app(app)`` is an ASGI app to serve alone
(``taskq dashboard APP``) or under a path of a Starlette, FastAPI or Django
project. Needs the ``web`` extra: ``pip install 'taskq[web]'``."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from starlette.applications import Starlette

    from taskq import TaskQ

MISSING = "the dashboard needs the web extra (Starlette, Jinja2, Uvicorn): pip install 'taskq[web]'"


def create_app(app: TaskQ, read_only: bool = False, auth: Any = None, *, refresh: float = 3.0) -> Starlette:
    """The dashboard of ``app`` as an ASGI application.

    ``read_only``: pages only, every action refused. ``auth``: None (no
    check: keep it on a loopback address or behind your own auth),
    ``(user, password)`` for HTTP Basic, or a function of the Starlette
    ``Request`` returning whether to let it in (may be async). ``refresh``:
    seconds between live updates of an open page (0: none).
    """
    try:
        from .server import build_app
    except ModuleNotFoundError as exc:
        if exc.name and exc.name.split(".")[0] in ("starlette", "jinja2", "markupsafe"):
            raise ImportError(MISSING) from exc
        raise
    return build_app(app, read_only=read_only, auth=auth, refresh=refresh)


__all__ = ["MISSING", "create_app"]
