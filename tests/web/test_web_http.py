"""The dashboard over plain HTTP (no JavaScript), served by Uvicorn against
the real test server: security (CSRF, auth, read-only, redirects, escaping,
secrets), the confirmation page, paging, and the ``taskq dashboard`` command."""

from __future__ import annotations

import base64
import re
import socket
import subprocess
import sys

import httpx
import pytest
import redis

from taskq import JobNotFound, JobState, TaskQ
from taskq.embedded import EphemeralServer
from taskq.web import create_app
from tests.apps.control import build
from tests.conftest import ROOT, wait_for


def token(client: httpx.Client, base: str) -> str:
    """Load a page so the dashboard sets its CSRF cookie; return the token."""
    client.get(base + "/")
    return str(client.cookies["taskq_csrf"])


def post(client: httpx.Client, base: str, action: str, **form: str) -> httpx.Response:
    return client.post(f"{base}/actions/{action}", data=form, follow_redirects=False)


def test_a_post_without_the_csrf_token_or_from_another_origin_is_refused(serve, web_app):
    app = web_app
    job = app.enqueue_call("noop", (), {}, {"queue": "other"})
    base = serve(create_app(app))
    with httpx.Client() as c:
        csrf = token(c, base)
        r = post(c, base, "stall", job_id=job.id, next="/")
        assert r.status_code == 403 and "security token" in r.text
        r = post(c, base, "stall", job_id=job.id, csrf="x" * 43, next="/")
        assert r.status_code == 403
        r = c.post(f"{base}/actions/stall", data={"job_id": job.id, "csrf": csrf},
                   headers={"Origin": "http://evil.example"}, follow_redirects=False)
        assert r.status_code == 403 and "another origin" in r.text
        assert job.state == JobState.QUEUED
        r = post(c, base, "stall", job_id=job.id, csrf=csrf, next="/")
        assert r.status_code == 303
        assert job.state == JobState.STALLED


def test_a_destructive_action_without_javascript_asks_on_a_page_first(serve, web_app):
    app = web_app
    job = app.enqueue_call("noop", (), {}, {"queue": "other"})
    base = serve(create_app(app))
    with httpx.Client() as c:
        csrf = token(c, base)
        r = post(c, base, "delete", job_id=job.id, csrf=csrf, next=f"/job?id={job.id}")
        assert r.status_code == 200 and f"Delete job {job.id} and all its data?" in r.text
        assert job.state == JobState.QUEUED  # asked, not done
        r = post(c, base, "delete", job_id=job.id, csrf=csrf, next="/jobs", confirmed="1")
        assert r.status_code == 303 and r.headers["location"] == "/jobs"
        with pytest.raises(JobNotFound):
            job.info()
        page = c.get(base + "/jobs").text
        assert f"job {job.id} deleted (was queued)" in page  # the outcome, shown once
        assert f"job {job.id} deleted" not in c.get(base + "/jobs").text


def test_a_failed_action_reports_why(serve, web_app):
    base = serve(create_app(web_app))
    with httpx.Client() as c:
        csrf = token(c, base)
        post(c, base, "requeue", job_id="no-such-job", csrf=csrf, next="/")
        assert "Requeue failed: JobNotFound" in c.get(base + "/").text


def test_redirects_stay_on_the_dashboard(serve, web_app):
    job = web_app.enqueue_call("noop", (), {}, {"queue": "other"})
    base = serve(create_app(web_app))
    with httpx.Client() as c:
        csrf = token(c, base)
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example"):
            r = post(c, base, "stall" if job.state == JobState.QUEUED else "unstall", job_id=job.id, csrf=csrf,
                     next=target)
            assert r.headers["location"] == "/", target


def test_read_only_shows_no_action_and_refuses_posts(serve, web_app):
    app = web_app
    job = app.enqueue_call("noop", (), {}, {"queue": "other"})
    base = serve(create_app(app, read_only=True))
    with httpx.Client() as c:
        page = c.get(f"{base}/job?id={job.id}").text
        assert "read-only" in page and "data-action" not in page
        assert "data-action" not in c.get(f"{base}/jobs?state=failed").text
        r = post(c, base, "delete", job_id=job.id, csrf=token(c, base), confirmed="1")
        assert r.status_code == 403
    assert job.state == JobState.QUEUED


def test_basic_auth_guards_every_path(serve, web_app):
    base = serve(create_app(web_app, auth=("ops", "s3cret:pw")))
    good = "Basic " + base64.b64encode(b"ops:s3cret:pw").decode()
    bad = "Basic " + base64.b64encode(b"ops:wrong").decode()
    with httpx.Client() as c:
        for path in ("/", "/jobs", "/periodic", "/static/dashboard.css"):
            r = c.get(base + path)
            assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic"), path
            assert c.get(base + path, headers={"Authorization": bad}).status_code == 401
            assert c.get(base + path, headers={"Authorization": good}).status_code == 200


def test_an_auth_hook_decides_and_one_that_raises_lets_nobody_in(serve, web_app):
    def hook(request):
        if request.headers.get("x-boom"):
            raise RuntimeError("hook bug")
        return request.headers.get("x-user") == "ana"

    base = serve(create_app(web_app, auth=hook))
    with httpx.Client() as c:
        assert c.get(base + "/").status_code == 403
        assert c.get(base + "/", headers={"x-user": "ana"}).status_code == 200
        assert c.get(base + "/", headers={"x-user": "ana", "x-boom": "1"}).status_code == 403


def test_job_data_is_escaped_and_pages_forbid_inline_scripts(serve, web_app):
    job = web_app.enqueue_call("noop", ("<script>alert(1)</script>",), {"<b>k</b>": "\"'&"}, {"queue": "other"})
    base = serve(create_app(web_app))
    with httpx.Client() as c:
        for path in (f"/job?id={job.id}", "/jobs?state=queued&queue=other"):
            r = c.get(base + path)
            assert "<script>alert" not in r.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in r.text
            assert "<b>k</b>" not in r.text
            assert "script-src 'self'" in r.headers["content-security-policy"]


def test_no_secret_is_shown(serve, namespace):
    with EphemeralServer() as server:
        with redis.Redis(host="127.0.0.1", port=server.port) as r:
            r.config_set("requirepass", "hunter2-pass")
        url = f"redis://:hunter2-pass@127.0.0.1:{server.port}/0"
        app = build(url, namespace, secret_key="signing-key-1", old_secret_keys=["signing-key-0"])
        try:
            job = app.enqueue("echo", 1)
            base = serve(create_app(app))
            with httpx.Client() as c:
                pages = [c.get(base + p).text for p in ("/", "/jobs", f"/job?id={job.id}", "/periodic")]
            assert "redis://:***@" in pages[0]
            for text in pages:
                assert "hunter2" not in text and "signing-key" not in text
        finally:
            app.close()


def test_pages_walk_through_many_queued_jobs_by_cursor(serve, web_app):
    app = web_app
    jobs = app.enqueue_many([("noop", (i,), {}) for i in range(250)], queue="bulk")
    jobs += app.enqueue_many([("noop", (i,), {}) for i in range(30)], queue="bulk", priority="high")
    base = serve(create_app(app))
    seen: list[str] = []
    url = f"{base}/jobs?state=queued&queue=bulk&limit=100"
    with httpx.Client() as c:
        while url:
            text = c.get(url).text
            assert "280</span> queued in all" in text
            seen += re.findall(r'<tr data-job="([^"]+)"', text)
            nxt = re.search(r'rel="next" href="([^"]+)"', text)
            url = base + nxt.group(1).replace("&amp;", "&") if nxt else ""
    assert len(seen) == 280 and set(seen) == {j.id for j in jobs}
    assert seen[:30] == [j.id for j in jobs[250:]]  # high priority first: the order they will be taken


def test_bad_input_gets_a_clear_page(serve, web_app):
    base = serve(create_app(web_app))
    with httpx.Client() as c:
        r = c.get(base + "/job?id=nope")
        assert r.status_code == 404 and "no job &#39;nope&#39;" in r.text
        r = c.get(base + "/jobs?state=failed&cursor=abc")
        assert r.status_code == 400 and "bad cursor" in r.text
        assert c.get(base + "/jobs?state=bogus").status_code == 200  # falls back to queued
        r = c.post(base + "/actions/nothing", data={"csrf": token(c, base)})
        assert r.status_code == 404


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run_cli(worker_env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "taskq_cli.main", "dashboard", *args], cwd=ROOT,
                            env=worker_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def test_the_dashboard_command_serves_and_warns_about_an_open_bind_without_auth(worker_env, web_app: TaskQ):
    port = _free_port()
    proc = _run_cli(worker_env, "-A", "tests.apps.control:app", "--host", "0.0.0.0", "--port", str(port),
                    "--read-only")
    try:
        body = wait_for(lambda: _get(f"http://127.0.0.1:{port}/") or proc.poll() is not None, 30,
                        interval=0.1, what="the dashboard")
        assert isinstance(body, str) and "read-only" in body and "Queues" in body
    finally:
        proc.terminate()
        out = proc.communicate(timeout=30)[0]
    assert "listens on 0.0.0.0 without --auth or --auth-hook" in out


def test_the_dashboard_command_refuses_bad_credentials_and_a_missing_app(worker_env):
    proc = _run_cli(worker_env, "tests.apps.control:app", "--auth", "nopassword")
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode == 2 and "USER:PASSWORD" in out
    env = {k: v for k, v in worker_env.items() if k != "TASKQ_APP"}
    proc = _run_cli(env)
    out = proc.communicate(timeout=60)[0]
    assert proc.returncode != 0 and "no app given" in out


def _get(url: str) -> str | None:
    try:
        return httpx.get(url, timeout=2).text
    except httpx.HTTPError:
        return None


def test_core_taskq_and_the_cli_do_not_import_the_web_extra():
    code = ("import sys, taskq, taskq_cli.main; "
            "loaded = [m for m in ('starlette', 'jinja2', 'uvicorn', 'taskq.web') if m in sys.modules]; "
            "assert not loaded, loaded")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
