"""Fixtures of the dashboard tests: a real Uvicorn server in a thread for
any ASGI app, an app with real jobs in the test's namespace, and a headless
Chromium driven by selenium (Debian's chromium and chromium-driver)."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from taskq import TaskQ
from tests.apps.control import build, scratch_key
from tests.conftest import wait_for

CHROMIUM = os.environ.get("TASKQ_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("TASKQ_TEST_CHROMEDRIVER", "/usr/bin/chromedriver")
CHROME_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
                "--window-size=1280,900", "--hide-scrollbars", "--force-device-scale-factor=1")


class Served:
    """An ASGI app served by Uvicorn on a free loopback port, in a thread."""

    def __init__(self, asgi: Any) -> None:
        config = uvicorn.Config(asgi, host="127.0.0.1", port=0, log_level="warning", lifespan="off",
                                access_log=False)
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, name="dashboard", daemon=True)
        self.thread.start()
        wait_for(lambda: self.server.started or not self.thread.is_alive(), 10, what="uvicorn start")
        assert self.server.started, "uvicorn did not start"
        port = self.server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)


@pytest.fixture
def serve() -> Iterator[Callable[[Any], str]]:
    """``serve(asgi_app) -> base URL``; every server stops at teardown."""
    started: list[Served] = []

    def start(asgi: Any) -> str:
        s = Served(asgi)
        started.append(s)
        return s.url

    yield start
    for s in started:
        s.stop()


@pytest.fixture
def web_app(redis_url: str, namespace: str) -> Iterator[TaskQ]:
    """The tasks of ``tests/apps/control.py`` (periodic ones too) in this test's namespace."""
    app = build(redis_url, namespace, periodic=True)
    yield app
    app.backend.client.rpush(scratch_key(app, "hold"), *["go"] * 20)  # release blocked jobs
    app.backend.delete_namespace()
    app.close()


def _chromium_missing() -> str | None:
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not (os.path.exists(p) or shutil.which(p))]
    if missing:
        return (f"headless browser tests need Debian's chromium and chromium-driver ({', '.join(missing)} not found): "
                "apt-get install -y chromium chromium-driver")
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    """One headless Chromium for the session. Without chromium the tests are
    skipped, but under CI (``CI`` set) they fail: CI must install it."""
    problem = _chromium_missing()
    if problem:
        if os.environ.get("CI"):
            pytest.fail(f"CI is set: {problem}")
        pytest.skip(problem)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in CHROME_FLAGS:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="session")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where screenshots go: ``$TASKQ_SCREENSHOTS`` (docs/screenshots to
    refresh the committed ones), else a temporary folder."""
    target = os.environ.get("TASKQ_SCREENSHOTS")
    path = Path(target) if target else tmp_path_factory.mktemp("screenshots")
    path.mkdir(parents=True, exist_ok=True)
    return path
