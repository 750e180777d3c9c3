"""Who may see the dashboard (HTTP Basic or a hook), CSRF tokens for its
forms, and the checks around redirects and binding."""

from __future__ import annotations

import base64
import binascii
import hmac
import inspect
import ipaddress
import logging
import secrets
import urllib.parse
from collections.abc import Awaitable, Callable

from starlette.concurrency import run_in_threadpool
from starlette.requests import HTTPConnection, Request
from starlette.responses import PlainTextResponse
from starlette.types import ASGIApp, Receive, Scope, Send

log = logging.getLogger("taskq.web")

AuthHook = Callable[[Request], bool | Awaitable[bool]]
Auth = tuple[str, str] | AuthHook | None
CSRF_COOKIE = "taskq_csrf"
CSRF_FIELD = "csrf"


def parse_credentials(text: str) -> tuple[str, str]:
    """``USER:PASSWORD`` as a pair; a ValueError names what is wrong."""
    user, sep, password = text.partition(":")
    if not sep or not user or not password:
        raise ValueError("--auth takes USER:PASSWORD, both non-empty")
    return user, password


def is_loopback(host: str) -> bool:
    if host in ("localhost", "localhost.localdomain"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind_warning(host: str, auth: Auth) -> str | None:
    """The warning to log for a bind reachable from other machines without auth."""
    if auth is None and not is_loopback(host):
        return (f"the dashboard listens on {host} without --auth or --auth-hook: anyone who reaches "
                "this address can read job arguments and results and, unless --read-only, act on jobs")
    return None


class AuthMiddleware:
    """Refuses every request (pages, assets, actions) that ``auth`` does not let in."""

    def __init__(self, app: ASGIApp, auth: Auth) -> None:
        self.app = app
        self.auth = auth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.auth is None:
            await self.app(scope, receive, send)
            return
        request = Request(scope, receive)
        if isinstance(self.auth, tuple):
            if not basic_ok(request, self.auth):
                response = PlainTextResponse("authentication required", 401,
                                             headers={"WWW-Authenticate": 'Basic realm="taskq", charset="UTF-8"'})
                await response(scope, receive, send)
                return
        elif not await hook_ok(self.auth, request):
            await PlainTextResponse("forbidden", 403)(scope, receive, send)
            return
        await self.app(scope, receive, send)


def basic_ok(request: HTTPConnection, expected: tuple[str, str]) -> bool:
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        user, _, password = base64.b64decode(token, validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return False
    same_user = hmac.compare_digest(user.encode(), expected[0].encode())
    same_password = hmac.compare_digest(password.encode(), expected[1].encode())
    return same_user and same_password


async def hook_ok(hook: AuthHook, request: Request) -> bool:
    """The hook's verdict; a hook that raises lets nobody in (and is logged)."""
    try:
        if inspect.iscoroutinefunction(hook):
            verdict = await hook(request)
        else:
            verdict = await run_in_threadpool(hook, request)
            if inspect.isawaitable(verdict):
                verdict = await verdict
    except Exception:
        log.exception("the dashboard's auth hook raised: request refused")
        return False
    return bool(verdict)


# ---------------------------------------------------------------- CSRF


def csrf_token(request: HTTPConnection) -> tuple[str, bool]:
    """The request's CSRF token, and whether it is new (to be set as a cookie)."""
    token = request.cookies.get(CSRF_COOKIE, "")
    if len(token) == 43 and token.replace("-", "").replace("_", "").isalnum():
        return token, False
    return secrets.token_urlsafe(32), True


def csrf_problem(request: Request, form_token: str) -> str | None:
    """Why a form post is refused, or None. Double submit (the form's token
    equals the cookie's, which another site can neither read nor set) and,
    when the browser says where the post comes from, the same origin."""
    cookie = request.cookies.get(CSRF_COOKIE, "")
    if not cookie or not form_token or not hmac.compare_digest(cookie.encode(), form_token.encode()):
        return "the form's security token is missing or stale: reload the page and try again"
    origin = request.headers.get("origin") or request.headers.get("referer")
    if origin and origin != "null":
        src = urllib.parse.urlsplit(origin)
        if (src.scheme, src.netloc) != (request.url.scheme, request.url.netloc):
            return f"a form posted from another origin ({src.scheme}://{src.netloc}) is refused"
    return None


def local_path(target: str, root: str) -> str:
    """``target`` if it is a path of this dashboard, else its home page (no open redirect)."""
    if target.startswith(root + "/") and not target.startswith("//") and "\\" not in target:
        parts = urllib.parse.urlsplit(target)
        if not parts.scheme and not parts.netloc:
            return target
    return root + "/"
