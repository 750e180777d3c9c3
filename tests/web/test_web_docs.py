"""The Python blocks of docs/dashboard.md run as they are: the Starlette,
FastAPI and Django mounts serve both the project's page and the dashboard
under /taskq, and the auth hook decides as it says."""

from __future__ import annotations

import base64
import re
import sys
import textwrap
from pathlib import Path
from typing import Any

import httpx
import pytest

from taskq.web import create_app
from tests.conftest import ROOT

DOC = ROOT / "docs" / "dashboard.md"
AUTH = {"Authorization": "Basic " + base64.b64encode(b"ops:pw-for-tests").decode()}


def blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", DOC.read_text(), flags=re.DOTALL)


def block(marker: str) -> str:
    (found,) = [b for b in blocks() if marker in b]
    return found


@pytest.fixture
def doc_env(monkeypatch: pytest.MonkeyPatch, redis_url: str, namespace: str) -> None:
    monkeypatch.setenv("TASKQ_REDIS_URL", redis_url)
    monkeypatch.setenv("TASKQ_NAMESPACE", namespace)
    monkeypatch.setenv("DASHBOARD_PASSWORD", "pw-for-tests")


def run_block(code: str) -> dict[str, Any]:
    ns: dict[str, Any] = {"__name__": "docs_example"}
    exec(compile(code, str(DOC), "exec"), ns)
    return ns


def check_mounted(base: str, home: str) -> None:
    with httpx.Client() as c:
        assert home in c.get(base + "/").text
        assert c.get(base + "/taskq/").status_code == 401
        page = c.get(base + "/taskq/", headers=AUTH)
        assert page.status_code == 200 and "Queues" in page.text
        assert 'href="/taskq/jobs?state=failed"' in page.text and 'href="/taskq/static/dashboard.css"' in page.text
        assert c.get(base + "/taskq/static/dashboard.js", headers=AUTH).status_code == 200
        assert c.cookies.jar and all(ck.path == "/taskq/" for ck in c.cookies.jar)


def test_every_python_block_is_run_here() -> None:
    assert len(blocks()) == 4


def test_the_starlette_mount_serves_the_dashboard_under_its_path(doc_env, serve) -> None:
    ns = run_block(block("starlette.routing import Mount, Route"))
    try:
        check_mounted(serve(ns["application"]), "the shop")
    finally:
        ns["taskq_app"].close()


def test_the_fastapi_mount_serves_the_dashboard_under_its_path(doc_env, serve) -> None:
    ns = run_block(block("from fastapi import FastAPI"))
    try:
        check_mounted(serve(ns["application"]), '"shop":"open"')
    finally:
        ns["taskq_app"].close()


def test_the_django_asgi_routing_serves_the_dashboard_and_django(doc_env, serve, tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "mysite"
    site.mkdir()
    (site / "__init__.py").write_text("")
    (site / "settings.py").write_text(textwrap.dedent("""
        SECRET_KEY = "only-for-tests"
        DEBUG = False
        ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
        ROOT_URLCONF = "mysite.urls"
        INSTALLED_APPS = []
        DATABASES = {}
    """))
    (site / "urls.py").write_text(textwrap.dedent("""
        from django.http import HttpResponse
        from django.urls import path

        urlpatterns = [path("", lambda request: HttpResponse("django home"))]
    """))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delenv("DJANGO_SETTINGS_MODULE", raising=False)
    ns = run_block(block("get_asgi_application"))
    try:
        check_mounted(serve(ns["application"]), "django home")
    finally:
        ns["taskq_app"].close()
        for name in [m for m in sys.modules if m == "mysite" or m.startswith("mysite.")]:
            del sys.modules[name]


def test_the_auth_hook_example_lets_in_the_ops_group_only(serve, web_app) -> None:
    hook = run_block(block("def dashboard_allowed"))["dashboard_allowed"]
    base = serve(create_app(web_app, auth=hook))
    with httpx.Client() as c:
        assert c.get(base + "/").status_code == 403
        assert c.get(base + "/", headers={"x-forwarded-groups": "dev,support"}).status_code == 403
        assert c.get(base + "/", headers={"x-forwarded-groups": "dev,ops"}).status_code == 200
