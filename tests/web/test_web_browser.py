"""The dashboard in a real headless Chromium, against the real test server
with real jobs: every page loads, actions clicked (with their confirmation)
change the jobs as the library sees them, live refresh updates a count
without reloading, and job data with markup shows as text."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import WebDriverWait

from taskq import JobNotFound, JobState, TaskQ
from taskq.web import create_app
from tests.apps.control import consumer, run_until, scratch_key, stop
from tests.conftest import wait_for

SCRIPT = "<script>window.__pwned = 1</script><img src=x onerror=\"window.__pwned = 2\">"


def state_of(app: TaskQ, job_id: str) -> JobState:
    return app.job(job_id).state


def wait_page(driver: Any, css: str, timeout: float = 10) -> Any:
    return WebDriverWait(driver, timeout).until(EC.presence_of_element_located((By.CSS_SELECTOR, css)))


def click(driver: Any, action: str, confirm: bool | None = None, scope: Any = None) -> None:
    """Click an action button; ``confirm``: accept (True) or dismiss (False)
    its question. Returns once the next page replaced this one (unless dismissed)."""
    page = driver.find_element(By.TAG_NAME, "html")
    (scope or driver).find_element(By.CSS_SELECTOR, f"button[data-action='{action}']").click()
    if confirm is not None:
        alert = WebDriverWait(driver, 5).until(EC.alert_is_present())
        alert.accept() if confirm else alert.dismiss()
    if confirm is not False:
        WebDriverWait(driver, 10).until(EC.staleness_of(page))


def flash(driver: Any) -> str:
    return str(wait_page(driver, "#flash").text)


def shoot(driver: Any, shots: Path, name: str) -> None:
    driver.save_screenshot(str(shots / f"{name}.png"))


def make_failures(app: TaskQ, specs: list[tuple[str, str]], queue: str = "other") -> list[str]:
    """Failed jobs of ``fail(message, exc_type)`` on ``queue``, run by an in-process consumer."""
    jobs = [app.enqueue_call("fail", (msg, exc), {}, {"queue": queue}) for msg, exc in specs]
    c = consumer(app, "w-fail", queues=(queue,))
    try:
        run_until(c, lambda: all(j.state == JobState.FAILED for j in jobs), what="failures")
    finally:
        stop(c)
    return [j.id for j in jobs]


def test_every_page_loads_with_real_jobs_and_a_running_worker(browser, serve, web_app, start_worker, shots):
    app = web_app
    for i in range(3):
        app.enqueue_call("echo", ({"order": 1000 + i, "items": ["book", "pen"]},), {}, {"priority": "high"})
    failed = make_failures(app, [("card declined", "ValueError"), ("no such key", "KeyError")])
    queued = [app.enqueue_call("noop", (i,), {}, {"queue": "other"}).id for i in range(5)]
    scheduled = app.enqueue_call("noop", ("later",), {}, {"delay": 3600}).id
    stalled = app.enqueue_call("noop", ("held",), {}, {"queue": "other"}).id
    app.control.stall(stalled)
    worker = start_worker("tests.apps.control:app", "-Q", "default,periodic")
    active = app.enqueue("progress", "hold").id
    wait_for(lambda: app.backend.client.llen(scratch_key(app, "started")), 30, what="the progress job to start")
    wait_for(lambda: app.control.periodics()[1].last_tick_at, 30, what="a periodic tick")  # "tick", every second
    url = serve(create_app(app, refresh=0))

    browser.get(url + "/")
    wait_page(browser, "#queues tr[data-queue='other']")
    assert browser.find_element(By.CSS_SELECTOR, "tr[data-queue='other'] .depth").text == "5"
    assert browser.find_element(By.CSS_SELECTOR, "[data-count='failed']").text == "2"
    assert browser.find_elements(By.CSS_SELECTOR, "#workers tr[data-worker]"), "no worker row"
    assert browser.find_elements(By.CSS_SELECTOR, "#tasks tr[data-task='fail']")
    assert browser.find_elements(By.CSS_SELECTOR, "#chart svg rect.fail"), "the chart shows no failure"
    shoot(browser, shots, "overview")

    expected = {"queued": queued[0], "scheduled": scheduled, "stalled": stalled, "failed": failed[0],
                "active": active}
    for state, job_id in expected.items():
        browser.get(f"{url}/jobs?state={state}")
        wait_page(browser, f"tr[data-job='{job_id}']")
    for state in ("waiting", "succeeded", "cancelled", "skipped"):
        browser.get(f"{url}/jobs?state={state}")
        wait_page(browser, "#jobs")
    browser.get(f"{url}/jobs?state=failed")
    wait_page(browser, f"tr[data-job='{failed[1]}']")
    shoot(browser, shots, "failed-jobs")

    browser.get(f"{url}/job?id={failed[1]}")
    assert "KeyError" in wait_page(browser, "#errors").text
    assert "Traceback" in browser.find_element(By.CSS_SELECTOR, "#errors pre.tb").get_attribute("textContent")
    shoot(browser, shots, "failed-job")
    browser.get(f"{url}/job?id={active}")
    assert wait_page(browser, "progress").get_attribute("value") == "0.5"
    shoot(browser, shots, "active-job")

    browser.get(f"{url}/periodic")
    row = wait_page(browser, "tr[data-periodic='tick']")
    assert row.find_element(By.CSS_SELECTOR, ".last").text != "never"
    assert "Europe/Paris" in browser.find_element(By.CSS_SELECTOR, "tr[data-periodic='morning']").text
    shoot(browser, shots, "periodic")

    # a forced cancel of the running job: confirmed, and the worker kills its attempt
    browser.get(f"{url}/job?id={active}")
    click(browser, "cancel_force", confirm=True)
    assert "forced cancel requested" in flash(browser)
    wait_for(lambda: state_of(app, active) == JobState.CANCELLED, 30, what="the forced cancel")
    worker.stop()


def test_job_actions_clicked_in_the_browser_change_the_jobs(browser, serve, web_app):
    app = web_app
    url = serve(create_app(app, refresh=0))
    failed = make_failures(app, [("declined", "ValueError")])[0]

    browser.get(f"{url}/job?id={failed}")
    click(browser, "requeue")
    assert "requeued (was failed)" in flash(browser)
    assert state_of(app, failed) == JobState.QUEUED

    click(browser, "stall")
    assert "stalled" in flash(browser)
    assert state_of(app, failed) == JobState.STALLED
    click(browser, "unstall")
    assert "unstalled" in flash(browser)
    assert state_of(app, failed) == JobState.QUEUED

    click(browser, "cancel", confirm=False)  # dismissed: nothing happens
    assert state_of(app, failed) == JobState.QUEUED
    click(browser, "cancel", confirm=True)
    assert "cancel cancelled" in flash(browser)
    assert state_of(app, failed) == JobState.CANCELLED

    click(browser, "delete", confirm=True)
    assert "deleted" in flash(browser)
    with pytest.raises(JobNotFound):
        app.job(failed).info()


def test_failed_jobs_requeued_and_purged_by_filter_in_the_browser(browser, serve, web_app):
    app = web_app
    url = serve(create_app(app, refresh=0))
    values = make_failures(app, [(f"v{i}", "ValueError") for i in range(3)])
    keys = make_failures(app, [(f"k{i}", "KeyError") for i in range(2)])

    browser.get(f"{url}/jobs?state=failed&error_type=KeyError")
    assert len(wait_page(browser, "#jobs").find_elements(By.CSS_SELECTOR, "tr[data-job]")) == 2
    click(browser, "purge_failed", confirm=True)
    assert "deleted 2 failed job(s) (error type KeyError)" in flash(browser)
    assert all(_gone(app, k) for k in keys)
    assert all(state_of(app, v) == JobState.FAILED for v in values)

    browser.get(f"{url}/jobs?state=failed&task=fail&queue=other")
    click(browser, "requeue_failed", confirm=True)
    assert "requeued 3 failed job(s)" in flash(browser)
    assert all(state_of(app, v) == JobState.QUEUED for v in values)


def _gone(app: TaskQ, job_id: str) -> bool:
    try:
        app.job(job_id).info()
    except JobNotFound:
        return True
    return False


def test_live_refresh_updates_a_count_without_reloading(browser, serve, web_app):
    app = web_app
    app.enqueue_call("noop", (), {}, {"queue": "other"})
    url = serve(create_app(app, refresh=0.3))
    browser.get(url + "/")
    cell = "tr[data-queue='other'] .depth"
    assert wait_page(browser, cell).text == "1"
    browser.execute_script("window.__same_page = 42")
    app.enqueue_many([("noop", (i,), {}) for i in range(4)], queue="other")
    WebDriverWait(browser, 15).until(lambda d: d.find_element(By.CSS_SELECTOR, cell).text == "5")
    assert browser.execute_script("return window.__same_page") == 42, "the page was reloaded"
    assert "updated" in browser.find_element(By.ID, "live-status").text


def test_markup_in_job_arguments_shows_as_text(browser, serve, web_app):
    app = web_app
    job = app.enqueue_call("noop", (SCRIPT,), {"note": SCRIPT}, {"queue": "other"})
    url = serve(create_app(app, refresh=0.3))
    browser.get(f"{url}/job?id={job.id}")
    assert SCRIPT in wait_page(browser, "#args").text
    browser.get(f"{url}/jobs?state=queued&queue=other")
    assert "<script>" in wait_page(browser, f"tr[data-job='{job.id}'] td.args").text
    browser.execute_script("document.body.setAttribute('data-x', '1')")  # let a live refresh run too
    WebDriverWait(browser, 10).until(lambda d: "updated" in d.find_element(By.ID, "live-status").text)
    assert browser.execute_script("return window.__pwned") is None
