"""``app.control.page()`` and ``app.control.periodics()``: pages by cursor
that cover every job once, filters bounded by a budget, waiting jobs found
by a resumable scan, and periodic ticks."""

from __future__ import annotations

import pytest

from taskq import ConfigurationError, JobState
from tests.apps.control import build, consumer, run_until, stop


def claim(app, worker, queues):
    s = app.settings
    caps = (s.failed_max, s.done_max, s.error_history, int(s.succeeded_ttl * 1000))
    return app.backend.settle_claim(worker, 1, [], list(queues), [], caps)[1]


def walk(capp, state, **kw):
    """Every page from the first: (ids, pages)."""
    ids, pages, cursor = [], [], ""
    while True:
        page = capp.control.page(state, cursor=cursor, **kw)
        pages.append(page)
        ids += [j.id for j in page.jobs]
        if page.next_cursor is None:
            return ids, pages
        cursor = page.next_cursor


def test_pages_of_queued_jobs_cover_each_once_in_the_order_they_will_be_taken(capp):
    low = capp.enqueue_many([("noop", (i,), {}) for i in range(120)], queue="a", priority="low")
    high = capp.enqueue_many([("noop", (i,), {}) for i in range(30)], queue="a", priority="high")
    other = capp.enqueue_many([("noop", (i,), {}) for i in range(10)], queue="b")
    ids, pages = walk(capp, "queued", queue="a", limit=40)
    assert ids == [j.id for j in high] + [j.id for j in low]
    assert [len(p.jobs) for p in pages] == [40, 40, 40, 30] and pages[0].total == 150
    ids, _ = walk(capp, "queued", limit=70)
    assert sorted(ids) == sorted(j.id for j in low + high + other)


def test_a_filtered_page_stops_at_its_budget_and_goes_on_from_there(capp):
    jobs = capp.enqueue_many([("echo" if i % 10 == 0 else "noop", (i,), {}) for i in range(500)], queue="a")
    echo = {j.id for j in jobs if j.task_name == "echo"}
    ids, pages = walk(capp, "queued", task="echo", limit=20, budget=100)
    assert set(ids) == echo and len(ids) == 50
    assert all(p.examined <= 100 for p in pages) and len(pages) >= 5


def test_failed_jobs_are_paged_newest_first_and_filtered_by_error_type(capp):
    jobs = [capp.enqueue("fail", f"m{i}", "KeyError" if i % 3 == 0 else "ValueError") for i in range(12)]
    c = consumer(capp)
    try:
        run_until(c, lambda: all(j.state == JobState.FAILED for j in jobs), what="failures")
    finally:
        stop(c)
    ids, pages = walk(capp, "failed", error_type="KeyError", limit=2)
    assert sorted(ids) == sorted(j.id for i, j in enumerate(jobs) if i % 3 == 0)
    assert pages[0].total == 12
    assert [j.id for j in capp.control.page("failed", limit=12).jobs] == [j.id for j in reversed(jobs)]


def test_waiting_jobs_are_found_by_a_resumable_scan(capp):
    holder = capp.tasks["locked_wait"].apply_async(queue="hold")
    claim(capp, "w-holder", ("hold",))  # leased: it holds the printer
    waiting = [capp.tasks["locked_wait"].apply_async(queue="later") for _ in range(3)]
    for _ in waiting:
        claim(capp, "w-waiter", ("later",))
    capp.enqueue_many([("noop", (i,), {}) for i in range(300)], queue="elsewhere")  # more hashes to scan
    assert holder.state == JobState.ACTIVE and all(j.state == JobState.WAITING for j in waiting)
    ids, pages = walk(capp, "waiting", limit=1, budget=50)
    assert sorted(ids) == sorted(j.id for j in waiting)
    assert all(p.total is None for p in pages)


def test_a_bad_state_or_cursor_is_refused(capp):
    with pytest.raises(ConfigurationError, match="unknown state"):
        capp.control.page("lost")
    with pytest.raises(ConfigurationError, match="bad cursor"):
        capp.control.page("failed", cursor="x1")
    with pytest.raises(ConfigurationError, match="bad cursor"):
        capp.control.page("waiting", cursor="12")


def test_periodics_tell_the_last_and_next_tick(redis_url, namespace):
    app = build(redis_url, namespace, periodic=True)
    try:
        before = {p.name: p for p in app.control.periodics()}
        assert set(before) == {"tick", "morning"} and before["tick"].last_tick_at is None
        assert before["morning"].tz == "Europe/Paris" and before["tick"].queue == "periodic"
        now_ms = app.backend.server_time_ms()
        app.backend.cron_init("tick", now_ms // 1000 * 1000)
        tick = {p.name: p for p in app.control.periodics()}["tick"]
        assert tick.last_tick_at == now_ms // 1000
        assert tick.next_tick_at is not None and tick.last_tick_at < tick.next_tick_at <= tick.last_tick_at + 2
    finally:
        app.backend.delete_namespace()
        app.close()
