"""``taskq dashboard``: serve the web dashboard (needs the ``web`` extra)."""

from __future__ import annotations

import importlib
import logging
from typing import Any

import click

from taskq.logs import setup_logging

from .common import app_params, friendly
from .loader import load_app

log = logging.getLogger("taskq.web")


def _hook(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    if not module_name or not attr:
        raise click.BadParameter("takes MODULE:FUNCTION", param_hint="--auth-hook")
    try:
        fn = getattr(importlib.import_module(module_name), attr)
    except Exception as exc:  # any error while importing the user's module
        raise click.BadParameter(f"cannot load {path}: {type(exc).__name__}: {exc}", param_hint="--auth-hook") from None
    if not callable(fn):
        raise click.BadParameter(f"{path} is not callable", param_hint="--auth-hook")
    return fn


@click.command("dashboard")
@app_params
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on, IPv4 or IPv6.")
@click.option("--port", type=click.IntRange(0, 65535), default=8080, show_default=True, help="Port to listen on.")
@click.option("--read-only", is_flag=True, help="Show pages only: every action is refused.")
@click.option("--auth", default=None, metavar="USER:PASSWORD", envvar="TASKQ_DASHBOARD_AUTH",
              help="Ask for these credentials (HTTP Basic; also $TASKQ_DASHBOARD_AUTH).")
@click.option("--auth-hook", default=None, metavar="MODULE:FN",
              help="Let a request in when FN(request) is true (a Starlette Request).")
@click.option("--refresh", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Seconds between live updates of an open page (0: none).")
@click.option("--loglevel", "-l", default="INFO", show_default=True,
              type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False), help="Log level.")
@friendly
def dashboard(app: str | None, host: str, port: int, read_only: bool, auth: str | None,
              auth_hook: str | None, refresh: float, loglevel: str) -> None:
    """Serve the web dashboard of APP (default 127.0.0.1:8080)."""
    if auth and auth_hook:
        raise click.UsageError("give --auth or --auth-hook, not both")
    setup_logging(loglevel)
    try:  # the optional extra
        import uvicorn

        from taskq.web import create_app
        from taskq.web.security import bind_warning, parse_credentials
    except ImportError:
        raise click.ClickException("the dashboard needs the web extra: pip install 'taskq[web]'") from None
    the_app = load_app(app)  # puts the working directory on sys.path for the hook too
    checker: Any = None
    if auth:
        try:
            checker = parse_credentials(auth)
        except ValueError as exc:
            raise click.BadParameter(str(exc), param_hint="--auth") from None
    elif auth_hook:
        checker = _hook(auth_hook)
    warning = bind_warning(host, checker)
    if warning:
        log.warning(warning)
    asgi = create_app(the_app, read_only=read_only, auth=checker, refresh=refresh)
    shown = f"[{host}]" if ":" in host else host
    log.info("dashboard of %s on http://%s:%d/%s", the_app.settings.namespace, shown, port,
             " (read-only)" if read_only else "")
    uvicorn.run(asgi, host=host, port=port, log_level=loglevel.lower(), access_log=False)
