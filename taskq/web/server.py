"""The dashboard's ASGI app (Starlette): routes, rendering, actions."""

from __future__ import annotations

import base64
import binascii
import json
import logging
import urllib.parse
from pathlib import Path
from typing import Any

import jinja2
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles

from taskq import TaskQ
from taskq.errors import ConfigurationError, JobNotFound, TaskQError

from . import views
from .actions import ACTIONS, available
from .security import CSRF_COOKIE, CSRF_FIELD, Auth, AuthMiddleware, csrf_problem, csrf_token, local_path

log = logging.getLogger("taskq.web")
HERE = Path(__file__).resolve().parent
FLASH_COOKIE = "taskq_flash"
REFRESH_HEADER = "x-taskq-refresh"
MAX_FORM = 64 * 1024
HEADERS = {
    # scripts and styles only from the dashboard's own files: no inline script runs
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(HERE / "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(pretty=views.pretty, when=views.when, duration=views.duration, ms=views.ms,
                       last_error=views.last_error)
    return env


class Dashboard:
    """Request handlers over one taskq app."""

    def __init__(self, app: TaskQ, read_only: bool, refresh: float) -> None:
        self.app = app
        self.read_only = read_only
        self.refresh = refresh
        self.env = environment()

    # ------------------------------------------------------------ rendering

    def render(self, request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
        token, new_token = csrf_token(request)
        root = str(request.scope.get("root_path", ""))
        flash = None if request.headers.get(REFRESH_HEADER) else _read_flash(request)

        def link(path: str, **query: Any) -> str:
            q = {k: str(v) for k, v in query.items() if v not in (None, "")}
            return root + path + ("?" + urllib.parse.urlencode(q) if q else "")

        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        html = self.env.get_template(template).render(
            link=link, here=here, csrf=token, read_only=self.read_only, refresh=self.refresh, flash=flash,
            namespace=self.app.settings.namespace, actions=ACTIONS, can=lambda name: self._can(name),
            page=template.removesuffix(".html"), **context)
        response = HTMLResponse(html, status, headers=HEADERS)
        cookie_path = root + "/"
        if new_token:
            response.set_cookie(CSRF_COOKIE, token, path=cookie_path, httponly=True, samesite="strict",
                                secure=request.url.scheme == "https")
        if flash is not None:
            response.delete_cookie(FLASH_COOKIE, path=cookie_path)
        return response

    def _can(self, name: str) -> bool:
        return not self.read_only and available(self.app, name) is not None

    def error(self, request: Request, status: int, message: str) -> HTMLResponse:
        return self.render(request, "error.html", status, title=f"Error {status}", message=message)

    async def page(self, request: Request, template: str, build: Any, *args: Any, **context: Any) -> Response:
        """Render ``template`` with ``data=build(app, *args)`` read off the event loop."""
        try:
            data = await run_in_threadpool(build, self.app, *args)
        except JobNotFound as exc:
            return self.error(request, 404, str(exc))
        except ConfigurationError as exc:
            return self.error(request, 400, str(exc))
        except TaskQError as exc:
            return self.error(request, 503, f"cannot read from the server: {type(exc).__name__}: {exc}")
        return self.render(request, template, data=data, **context)

    # ------------------------------------------------------------ pages

    async def overview(self, request: Request) -> Response:
        return await self.page(request, "overview.html", views.overview, title="Overview")

    async def jobs(self, request: Request) -> Response:
        filters = views.Filters.parse(dict(request.query_params))
        queues = sorted({self.app.options_for(t).queue for t in self.app.tasks})
        return await self.page(request, "jobs.html", views.jobs, filters, title=f"Jobs: {filters.state}",
                               known_queues=queues, page_sizes=views.PAGE_SIZES)

    async def job(self, request: Request) -> Response:
        job_id = request.query_params.get("id", "")
        if not job_id:
            return self.error(request, 400, "no job id given (/job?id=...)")
        return await self.page(request, "job.html", views.job, job_id, title=f"Job {job_id}")

    async def periodic(self, request: Request) -> Response:
        return await self.page(request, "periodic.html", views.periodics, title="Periodic tasks")

    # ------------------------------------------------------------ actions

    async def action(self, request: Request) -> Response:
        if self.read_only:
            return self.error(request, 403, "this dashboard is read-only")
        form = await _form(request)
        if form is None:
            return self.error(request, 400, "an action takes a urlencoded form of at most 64 KiB")
        problem = csrf_problem(request, form.get(CSRF_FIELD, ""))
        if problem:
            return self.error(request, 403, problem)
        action = available(self.app, request.path_params["name"])
        if action is None:
            return self.error(request, 404, f"no action {request.path_params['name']!r} here")
        target = local_path(form.get("next", ""), request.scope.get("root_path", ""))
        if action.confirm and form.get("confirmed") != "1":  # without JavaScript: ask on a page of its own
            fields = {k: v for k, v in form.items() if k not in (CSRF_FIELD, "confirmed", "next")}
            return self.render(request, "confirm.html", title="Confirm", action=action,
                               question=action.question(form), fields=fields, back=target)
        try:
            text = await run_in_threadpool(action.run, self.app, form)
            ok = True
        except TaskQError as exc:
            text, ok = f"{action.label} failed: {type(exc).__name__}: {exc}", False
        log.info("dashboard action %s %s: %s", action.name,
                 {k: v for k, v in form.items() if k not in (CSRF_FIELD, "next", "confirmed")}, text)
        response = RedirectResponse(target, 303)
        payload = base64.urlsafe_b64encode(json.dumps({"ok": ok, "text": text}).encode()).decode()
        response.set_cookie(FLASH_COOKIE, payload, path=request.scope.get("root_path", "") + "/", max_age=60,
                            httponly=True, samesite="strict", secure=request.url.scheme == "https")
        return response


async def _form(request: Request) -> dict[str, str] | None:
    """The posted form (``application/x-www-form-urlencoded``, as the pages
    send), last value of each name; None for another body or a large one."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind != "application/x-www-form-urlencoded":
        return None
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        return dict(urllib.parse.parse_qsl(body.decode("utf-8"), keep_blank_values=True))
    except UnicodeDecodeError:
        return None


def _read_flash(request: Request) -> dict[str, Any] | None:
    raw = request.cookies.get(FLASH_COOKIE)
    if not raw:
        return None
    try:
        data = json.loads(base64.urlsafe_b64decode(raw.encode()))
    except (binascii.Error, ValueError):
        return None
    if not isinstance(data, dict) or not isinstance(data.get("text"), str):
        return None
    return {"ok": bool(data.get("ok")), "text": data["text"]}


def build_app(app: TaskQ, *, read_only: bool = False, auth: Auth = None, refresh: float = 3.0) -> Starlette:
    """The dashboard of ``app`` as a Starlette (ASGI) application."""
    if refresh < 0:
        raise ConfigurationError("refresh must be >= 0 seconds (0: no live refresh)")
    d = Dashboard(app, read_only, refresh)
    routes = [
        Route("/", d.overview, name="overview"),
        Route("/jobs", d.jobs, name="jobs"),
        Route("/job", d.job, name="job"),
        Route("/periodic", d.periodic, name="periodic"),
        Route("/actions/{name}", d.action, methods=["POST"], name="action"),
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
    return Starlette(routes=routes, middleware=[Middleware(AuthMiddleware, auth=auth)])
