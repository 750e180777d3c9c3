"""Periodic tasks: the schedule arithmetic (``taskq.cron.Periodic``), one
scheduler pass with explicit time (``Scheduler.fire``), ``taskq periodic
list``, and three standalone ``taskq scheduler`` processes sharing ticks.
"""

from __future__ import annotations

import datetime as dt
import signal
import subprocess
import sys
import threading
import time

import pytest

from taskq import ConfigurationError, PayloadTooLarge
from taskq.cron import Periodic
from taskq.enqueue import build_job
from taskq.worker.scheduler import Scheduler
from tests.apps.control import build
from tests.conftest import ROOT, wait_for

UTC = dt.UTC


def ms(*args: int, tz: dt.tzinfo = UTC) -> int:
    return int(dt.datetime(*args, tzinfo=tz).timestamp() * 1000)


def every(seconds: float, catch_up: str = "one") -> Periodic:
    return Periodic.build(cron=None, every=seconds, tz=None, catch_up=catch_up)


def cron(expr: str, tz: str | None = None, catch_up: str = "one") -> Periodic:
    return Periodic.build(cron=expr, every=None, tz=tz, catch_up=catch_up)


# ---------------------------------------------------------------- Periodic


def test_every_ticks_on_multiples_of_the_interval():
    p = every(10)
    assert p.next_after(0) == 10_000
    assert p.next_after(9_999) == 10_000
    assert p.next_after(10_000) == 20_000
    assert every(dt.timedelta(minutes=1)).next_after(ms(2024, 1, 1, 0, 0, 30)) == ms(2024, 1, 1, 0, 1)
    assert p.description == "every 10s"


def test_cron_with_five_fields_and_with_seconds():
    assert cron("*/15 * * * *").next_after(ms(2024, 1, 1, 0, 7)) == ms(2024, 1, 1, 0, 15)
    assert cron("0 0 1 * *").next_after(ms(2024, 1, 1)) == ms(2024, 2, 1)
    six = cron("* * * * * */10")  # croniter's sixth field is seconds
    assert six.next_after(ms(2024, 1, 1, 0, 0, 3)) == ms(2024, 1, 1, 0, 0, 10)
    assert six.due_ticks(ms(2024, 1, 1, 0, 0, 10), ms(2024, 1, 1, 0, 0, 10)) == []
    assert cron("*/15 * * * *").description == "*/15 * * * *"


def test_cron_in_a_time_zone_follows_its_daylight_saving_time():
    p = cron("30 9 * * 1-5", tz="Europe/Paris")
    assert p.next_after(ms(2024, 1, 1)) == ms(2024, 1, 1, 8, 30)  # Monday, UTC+1
    assert p.next_after(ms(2024, 7, 1)) == ms(2024, 7, 1, 7, 30)  # Monday, UTC+2
    assert p.next_after(ms(2024, 1, 5, 9)) == ms(2024, 1, 8, 8, 30)  # Friday after 9:30 -> Monday
    assert cron("30 9 * * *").next_after(ms(2024, 1, 1)) == ms(2024, 1, 1, 9, 30)  # UTC by default
    hourly = cron("0 * * * *", tz="Europe/Paris")  # across the autumn change: no hour twice, none lost
    t, ticks = ms(2024, 10, 26, 23, 30), []
    for _ in range(4):
        t = hourly.next_after(t)
        ticks.append(t)
    assert ticks == [ms(2024, 10, 27, h) for h in range(4)]


def test_a_daily_cron_in_the_repeated_autumn_hour_fires_once():
    """27 Oct 2024, Paris: 02:00-03:00 happens twice (CEST, then CET). A job
    set for 02:30 runs once that day, as cron runs it; an hourly one keeps
    every real hour."""
    p = cron("30 2 * * *", tz="Europe/Paris", catch_up="all")
    first = ms(2024, 10, 27, 0, 30)  # 02:30 CEST
    assert p.next_after(ms(2024, 10, 26, 12)) == first
    assert p.next_after(first) == ms(2024, 10, 28, 1, 30)  # not 02:30 CET (01:30 UTC) the same night
    assert p.due_ticks(ms(2024, 10, 26, 12), ms(2024, 10, 28, 12)) == [first, ms(2024, 10, 28, 1, 30)]
    half_hourly = cron("*/30 * * * *", tz="Europe/Paris", catch_up="all")
    assert half_hourly.due_ticks(ms(2024, 10, 26, 23, 59), ms(2024, 10, 27, 2)) == [
        ms(2024, 10, 27, 0), ms(2024, 10, 27, 0, 30), ms(2024, 10, 27, 1), ms(2024, 10, 27, 1, 30), ms(2024, 10, 27, 2)]


def test_a_daily_cron_on_the_autumn_change_enqueues_one_job_in_a_scheduler_pass(redis_url, namespace):
    app = build(redis_url, namespace)
    try:
        app.periodic("30 2 * * *", tz="Europe/Paris", name="nightly", queue="periodic")(lambda: None)
        s = Scheduler(app, reaper=False)
        p = app.periodics["nightly"]
        for t in (ms(2024, 10, 26, 12), ms(2024, 10, 27, 0, 30, 1), ms(2024, 10, 27, 1, 30, 1),
                  ms(2024, 10, 27, 12)):
            s.fire(p, t)
        assert cron_jobs(app) == [f"cron:nightly:{ms(2024, 10, 27, 0, 30)}"]
    finally:
        app.backend.delete_namespace()
        app.close()


@pytest.mark.parametrize(
    ("catch_up", "last", "now", "expected"),
    [
        ("one", 10_000, 10_000, []),
        ("one", 10_000, 20_000, [20_000]),
        ("one", 10_000, 65_000, [60_000]),
        ("all", 10_000, 65_000, [20_000, 30_000, 40_000, 50_000, 60_000]),
        ("skip", 10_000, 65_000, []),  # the latest tick is 5 s old: missed, skipped
        ("skip", 10_000, 60_500, [60_000]),  # the latest tick is current
        ("skip", 50_000, 65_000, []),  # a single missed tick is skipped too
        ("skip", 50_000, 60_900, [60_000]),
    ],
)
def test_due_ticks_per_catch_up_policy(catch_up, last, now, expected):
    assert every(10, catch_up).due_ticks(last, now) == expected


def test_catch_up_all_is_bounded():
    ticks = every(1, "all").due_ticks(0, 10_000_000)
    assert len(ticks) == 1000 and ticks[0] == 1000


def test_one_and_skip_take_the_latest_tick_however_many_were_missed():
    """More missed ticks than MAX_CATCH_UP: "one" took the 1,000th tick after
    the last one run (long past), and "skip" missed the current tick."""
    assert every(1, "one").due_ticks(0, 10_000_500) == [10_000_000]
    assert every(1, "skip").due_ticks(0, 10_000_500) == [10_000_000]
    assert every(10, "skip").due_ticks(0, 10_001_500) == []  # the latest tick, 10,000 s, is 1.5 s old
    seconds = cron("* * * * * *", catch_up="one")
    assert seconds.due_ticks(ms(2024, 1, 1), ms(2024, 1, 1, 2) + 300) == [ms(2024, 1, 1, 2)]
    daily = cron("30 9 * * *", tz="Europe/Paris", catch_up="one")
    assert daily.due_ticks(ms(2020, 1, 1), ms(2024, 7, 1, 12)) == [ms(2024, 7, 1, 7, 30)]
    assert daily.due_ticks(ms(2024, 7, 1, 7, 30), ms(2024, 7, 2, 7, 29)) == []


def test_a_cron_with_a_year_field_ends_after_its_last_tick():
    """croniter's seventh field is the year. After the last date, next_after
    raised CroniterBadDateError: the last tick never fired."""
    p = cron("0 0 1 * * 0 2070", catch_up="one")  # midnight on the 1st of each month of 2070
    assert p.next_after(ms(2070, 11, 15)) == ms(2070, 12, 1)
    assert p.next_after(ms(2070, 12, 1)) is None
    assert p.due_ticks(ms(2070, 11, 15), ms(2070, 12, 1) + 500) == [ms(2070, 12, 1)]
    assert p.due_ticks(ms(2070, 12, 1), ms(2071, 6, 1)) == []
    every_one = cron("0 0 1 * * 0 2070", catch_up="all")
    assert every_one.due_ticks(ms(2070, 9, 15), ms(2071, 1, 1)) == [ms(2070, m, 1) for m in (10, 11, 12)]


def test_a_scheduler_fires_the_last_tick_of_an_ending_schedule(redis_url, namespace):
    app = build(redis_url, namespace)
    try:
        app.periodic("0 0 1 * * 0 2070", name="last", queue="periodic")(lambda: None)
        s = Scheduler(app, reaper=False)
        p = app.periodics["last"]
        assert s.fire(p, ms(2070, 11, 15)) == ms(2070, 12, 1)
        assert s.fire(p, ms(2070, 12, 1) + 200) is None
        assert s.fire(p, ms(2071, 1, 1)) is None
        assert cron_jobs(app) == [f"cron:last:{ms(2070, 12, 1)}"]
        assert s.tick(ms(2071, 1, 1)) > 0
        late = Scheduler(app, reaper=False)  # a scheduler first started after the end
        app.backend.client.hdel(app.backend.keys.cron, "last")
        assert late.fire(p, ms(2071, 1, 1)) is None
        assert cron_jobs(app) == [f"cron:last:{ms(2070, 12, 1)}"]
    finally:
        app.backend.delete_namespace()
        app.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"cron": "61 * * * *"}, "bad cron expression '61 \\* \\* \\* \\*': .*out of range"),
        ({"cron": "every day"}, "bad cron expression 'every day': .*columns"),
        ({"cron": "* * * * *", "every": 5}, "exactly one"),
        ({}, "exactly one"),
        ({"every": 0.5}, "at least 1 second"),
        ({"every": "soon"}, "every must be a number of seconds"),
        ({"every": 5, "catch_up": "most"}, "catch_up must be one of"),
        ({"every": 5, "tz": "Mars/Olympus"}, "unknown time zone 'Mars/Olympus'"),
        ({"cron": "0 0 31 2 *"}, "never fires: no date matches"),  # valid syntax, no such date
        ({"cron": "0 0 31 4 *"}, "never fires"),
    ],
)
def test_bad_schedules_raise_configuration_error(kwargs, message):
    args = {"cron": None, "every": None, "tz": None, "catch_up": "one", **kwargs}
    with pytest.raises(ConfigurationError, match=message):
        Periodic.build(**args)


def test_a_cron_that_matches_no_date_is_refused_before_it_reaches_a_scheduler(redis_url, namespace):
    """Accepted at decoration, "0 0 31 2 *" raised CroniterBadDateError in the
    scheduler's first pass: the scheduler thread of every worker died, and
    with it delayed jobs, retries, other periodic tasks and the reaper."""
    app = build(redis_url, namespace)
    try:
        with pytest.raises(ConfigurationError, match="never fires"):
            app.periodic("0 0 31 2 *", name="feb31", queue="periodic")(lambda: None)
        assert "feb31" not in app.periodics
    finally:
        app.backend.delete_namespace()
        app.close()


def test_app_periodic_rejects_a_bad_cron_at_decoration(redis_url, namespace):
    app = build(redis_url, namespace)
    with pytest.raises(ConfigurationError, match="out of range"):
        app.periodic("0 25 * * *")(lambda: None)
    app.close()


def test_periodic_arguments_that_cannot_be_encoded_are_refused_at_decoration(redis_url, namespace):
    """Accepted at decoration, they raised TypeError in the scheduler at the
    first tick: the scheduler thread died, and delayed jobs stayed scheduled."""
    app = build(redis_url, namespace, max_payload_bytes=1000)
    try:
        with pytest.raises(TypeError, match="positional argument 0 cannot be serialized"):
            app.periodic(every=1, name="bad_args", args=(object(),))(lambda x: None)
        with pytest.raises(PayloadTooLarge, match="arguments of big_args encode to"):
            app.periodic(every=1, name="big_args", kwargs={"blob": "x" * 2000})(lambda blob: None)
        assert not {"bad_args", "big_args"} & (set(app.periodics) | set(app.tasks))
    finally:
        app.close()


def test_a_second_schedule_under_the_same_name_is_refused(redis_url, namespace):
    """The second replaced the first without a word: the morning report never ran."""
    app = build(redis_url, namespace)
    try:
        def report(when: str) -> None: ...

        app.periodic("0 9 * * *", name="report", args=("morning",))(report)
        app.periodic("0 9 * * *", name="report", args=("morning",))(report)  # the same again: fine
        with pytest.raises(ConfigurationError, match="periodic task 'report' already runs on '0 9 \\* \\* \\*'"):
            app.periodic("0 17 * * *", name="report", args=("evening",))(report)
        assert app.periodics["report"].cron == "0 9 * * *"
        app.periodic("0 17 * * *", name="evening_report", args=("evening",))(report)
        assert set(app.periodics) == {"report", "evening_report"}
    finally:
        app.close()


def test_a_periodic_task_whose_tick_cannot_be_enqueued_stops_nothing_else(redis_url, namespace, caplog):
    """Its resource function fails at every tick: the other periodic tasks
    fire, due jobs are promoted and the reaper runs; the error is logged once."""
    app = build(redis_url, namespace)
    try:
        app.periodic(every=1, name="broken", queue="periodic", resource=lambda: {}["shard"])(lambda: None)
        app.periodic(every=1, name="fine", queue="periodic")(lambda: None)
        b = app.backend
        s = Scheduler(app)
        t0 = ms(2024, 1, 1)
        s.tick(t0)
        due = b.enqueue([build_job(app.settings, "noop", (), {}, app.options_for("noop"), {}, eta=dt.datetime(
            2024, 1, 1, 0, 0, 2, tzinfo=UTC))], now_ms=t0)
        assert due[0][2] == "scheduled"
        with caplog.at_level("ERROR", logger="taskq.scheduler"):
            for i in range(1, 4):
                s.tick(t0 + i * 1_000 + 100)
        assert cron_jobs(app) == [f"cron:fine:{t0 + i * 1_000}" for i in range(1, 4)]
        assert app.job(due[0][0]).state.value == "queued"
        assert s.reaper.last_tick_ms == t0 + 3_100
        failures = [r for r in caplog.records if "broken" in r.getMessage()]
        assert len(failures) == 1 and "KeyError: 'shard'" in failures[0].getMessage()
    finally:
        b.delete_namespace()
        app.close()


def test_the_scheduler_loop_survives_a_pass_that_fails(redis_url, namespace, monkeypatch):
    """Only a lost server was caught: any other error ended the scheduler
    thread, and with it promotion, periodic tasks and the reaper."""
    app = build(redis_url, namespace)
    try:
        s = Scheduler(app, reaper=False)
        passes: list[int] = []
        real = Scheduler.tick

        def tick(self, now_ms=None):
            passes.append(1)
            if len(passes) == 1:
                raise RuntimeError("a bug in one pass")
            return real(self, now_ms)

        monkeypatch.setattr(Scheduler, "tick", tick)
        thread = threading.Thread(target=s.run, daemon=True)
        thread.start()
        job = app.tasks["noop"].apply_async(delay=0.05)
        wait_for(lambda: job.state.value == "queued", 10, what="the delayed job promoted")
        assert len(passes) >= 2 and thread.is_alive()
        s.stop()
        thread.join(10)
        assert not thread.is_alive()
    finally:
        app.backend.delete_namespace()
        app.close()


# ---------------------------------------------------------------- one scheduler pass


@pytest.fixture
def capp(redis_url, namespace):
    app = build(redis_url, namespace, periodic=True)
    yield app
    app.backend.delete_namespace()
    app.close()


def cron_jobs(app, queue="periodic") -> list[str]:
    return sorted(app.backend.ready_ids(queue, 10_000))


def test_first_pass_only_starts_the_schedule_then_each_tick_fires_once(capp):
    s = Scheduler(capp, reaper=False)
    p = capp.periodics["tick"]
    t = ms(2024, 1, 1) + 500
    assert s.fire(p, t) == ms(2024, 1, 1) + 1_000
    assert cron_jobs(capp) == []
    assert s.fire(p, t + 600) == ms(2024, 1, 1) + 2_000
    assert s.fire(p, t + 700) == ms(2024, 1, 1) + 2_000  # same tick: nothing new
    assert cron_jobs(capp) == [f"cron:tick:{ms(2024, 1, 1) + 1_000}"]
    job = capp.job(cron_jobs(capp)[0]).info()
    assert (job.task, job.queue, job.state.value) == ("tick", "periodic", "queued")


def test_missed_ticks_fire_one_catch_up_by_default(capp):
    capp.periodic(every=1, name="often", queue="periodic")(lambda: None)
    s = Scheduler(capp, reaper=False)
    p = capp.periodics["often"]
    assert p.catch_up == "one"
    t0 = ms(2024, 1, 1)
    s.fire(p, t0)
    s.fire(p, t0 + 1_000)
    s.fire(p, t0 + 60_250)  # 59 ticks missed
    assert cron_jobs(capp) == sorted([f"cron:often:{t0 + 1_000}", f"cron:often:{t0 + 60_000}"])
    s.fire(p, t0 + 61_000)
    assert len(cron_jobs(capp)) == 3


def test_one_catch_up_job_after_an_outage_of_thousands_of_ticks(capp):
    capp.periodic(every=1, name="often", queue="periodic")(lambda: None)
    s = Scheduler(capp, reaper=False)
    p = capp.periodics["often"]
    t0 = ms(2024, 1, 1)
    s.fire(p, t0)
    back = t0 + 3_600_000 + 200  # an hour without a scheduler: 3,600 ticks missed
    for i in range(5):
        assert s.fire(p, back + i) == t0 + 3_601_000
    assert cron_jobs(capp) == [f"cron:often:{t0 + 3_600_000}"]
    assert capp.backend.cron_last("often") == t0 + 3_600_000


@pytest.mark.parametrize(("catch_up", "count"), [("all", 10), ("skip", 0), ("one", 1)])
def test_catch_up_policies_in_a_scheduler_pass(redis_url, namespace, catch_up, count):
    app = build(redis_url, namespace)
    try:
        app.periodic(every=5, catch_up=catch_up, name="often", queue="periodic")(lambda: None)
        s = Scheduler(app, reaper=False)
        p = app.periodics["often"]
        t0 = ms(2024, 1, 1)
        s.fire(p, t0)
        s.fire(p, t0 + 52_500)  # ten ticks missed, the latest 2.5 s ago
        assert len(cron_jobs(app)) == count
        assert app.backend.cron_last("often") >= t0 + 50_000  # the missed ticks are behind us
        s.fire(p, t0 + 55_000)
        assert len(cron_jobs(app)) == count + 1
    finally:
        app.backend.delete_namespace()
        app.close()


def test_a_tick_due_when_a_pass_starts_behind_a_large_backlog_is_not_skipped(redis_url, namespace, monkeypatch):
    """The pass promotes its backlog first (1.6 s for 100,000 jobs); the
    ticks were judged at its end, so catch_up="skip" dropped a tick that was
    on time."""
    from taskq.worker import scheduler as scheduler_module

    app = build(redis_url, namespace)
    try:
        app.periodic(every=10, catch_up="skip", name="often", queue="periodic")(lambda: None)
        s = Scheduler(app, reaper=False)
        p = app.periodics["often"]
        t0 = ms(2024, 1, 1)
        s.fire(p, t0 - 5_000)
        noop = app.tasks["noop"]
        b = app.backend
        b.enqueue([build_job(app.settings, "noop", (i,), {}, noop.options, {},
                             eta=dt.datetime(2024, 1, 1, tzinfo=UTC) - dt.timedelta(seconds=1)) for i in range(15)],
                  now_ms=t0 - 5_000)
        monkeypatch.setattr(scheduler_module, "PROMOTE_BATCH", 10)  # the 15 jobs: two promote calls
        times = iter([t0 + 100, t0 + 1_600])  # the server's clock at each call: the backlog took 1.5 s
        promote = b.promote
        monkeypatch.setattr(b, "promote", lambda limit, now_ms="": promote(limit, now_ms=next(times)))
        assert s.tick() == pytest.approx(8.4)  # until the next tick, from the end of the pass
        assert cron_jobs(app) == [f"cron:often:{t0}"]
        assert len(b.ready_ids("default", 100)) == 15
    finally:
        app.backend.delete_namespace()
        app.close()


def test_skip_passes_over_a_single_missed_tick_of_a_daily_cron(redis_url, namespace):
    app = build(redis_url, namespace)
    try:
        app.periodic("0 9 * * *", catch_up="skip", name="daily", queue="periodic")(lambda: None)
        s = Scheduler(app, reaper=False)
        p = app.periodics["daily"]
        s.fire(p, ms(2024, 1, 1, 8))
        s.fire(p, ms(2024, 1, 1, 15))  # no scheduler ran at 9:00
        assert cron_jobs(app) == []
        assert app.backend.cron_last("daily") == ms(2024, 1, 1, 15)
        s.fire(p, ms(2024, 1, 2, 9, 0, 0) + 200)
        assert cron_jobs(app) == [f"cron:daily:{ms(2024, 1, 2, 9)}"]
    finally:
        app.backend.delete_namespace()
        app.close()


def test_cron_task_in_a_time_zone_fires_at_its_local_time(capp):
    s = Scheduler(capp, reaper=False)
    p = capp.periodics["morning"]
    s.fire(p, ms(2024, 1, 1, 8))
    s.fire(p, ms(2024, 1, 1, 8, 29, 59))
    assert cron_jobs(capp) == []
    s.fire(p, ms(2024, 1, 1, 8, 30))
    assert cron_jobs(capp) == [f"cron:morning:{ms(2024, 1, 1, 8, 30)}"]


def test_schedulers_firing_the_same_tick_at_once_enqueue_it_once(capp):
    apps = [build(capp.settings.redis_url, capp.settings.namespace, periodic=True) for _ in range(3)]
    t0 = ms(2024, 1, 1)
    Scheduler(apps[0], reaper=False).fire(apps[0].periodics["tick"], t0)
    barrier = threading.Barrier(3)

    def run(app) -> None:
        s = Scheduler(app, reaper=False)
        barrier.wait()
        for i in range(1, 51):
            s.fire(app.periodics["tick"], t0 + i * 1_000)

    threads = [threading.Thread(target=run, args=(a,)) for a in apps]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert cron_jobs(capp) == sorted(f"cron:tick:{t0 + i * 1_000}" for i in range(1, 51))
    assert capp.backend.task_counters()["tick|enqueued"] == 50
    for a in apps:
        a.close()


# ---------------------------------------------------------------- processes


def test_periodic_list_prints_schedule_and_next_run(capp, worker_env):
    out = subprocess.run([sys.executable, "-m", "taskq_cli.main", "periodic", "list", "tests.apps.control:app"],
                         cwd=ROOT, env=worker_env, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = dict(line.split("  ", 1) for line in out.stdout.strip().splitlines())
    assert set(lines) == {"tick", "morning"}
    assert lines["tick"].startswith("every 1s  tz=UTC  catch_up=all  next=")
    ticks = [dt.datetime.fromisoformat(t) for t in lines["tick"].split("next=")[1].split(", ")]
    assert len(ticks) == 3 and abs(ticks[0].timestamp() - time.time()) < 5
    assert [(b - a).total_seconds() for a, b in zip(ticks, ticks[1:])] == [1, 1]
    assert lines["morning"].startswith("30 9 * * 1-5  tz=Europe/Paris  catch_up=one  next=")
    mornings = [dt.datetime.fromisoformat(t) for t in lines["morning"].split("next=")[1].split(", ")]
    assert len(mornings) == 3 and len({m.date() for m in mornings}) == 3
    for nxt in mornings:
        local = nxt.astimezone(dt.timezone(nxt.utcoffset()))
        assert (local.hour, local.minute) == (9, 30) and local.weekday() < 5


def test_three_schedulers_enqueue_each_tick_exactly_once(capp, worker_env, tmp_path):
    procs = []
    for i in range(3):
        fh = open(tmp_path / f"scheduler-{i}.log", "wb")
        procs.append((subprocess.Popen(
            [sys.executable, "-m", "taskq_cli.main", "scheduler", "tests.apps.control:app"],
            cwd=ROOT, env=worker_env, stdout=fh, stderr=subprocess.STDOUT), fh))
    try:
        wait_for(lambda: cron_jobs(capp), 30, what="the first tick")
        start = time.monotonic()
        # about ten seconds of ticks (longer if the machine is slow to start them)
        wait_for(lambda: time.monotonic() - start > 9 and len(cron_jobs(capp)) >= 10, 40, 0.2, "ten ticks")
    finally:
        for p, _ in procs:
            p.send_signal(signal.SIGTERM)
        for p, fh in procs:
            try:
                assert p.wait(15) == 0
            finally:
                fh.close()
    ids = cron_jobs(capp)
    assert len(ids) == len(set(ids))
    ticks = sorted(int(i.rsplit(":", 1)[1]) for i in ids)
    assert ticks == list(range(ticks[0], ticks[-1] + 1, 1_000)), "a tick was skipped"
    stats = capp.backend.task_counters()
    assert int(stats["tick|enqueued"]) == len(ticks)
    firing = [i for i in range(3) if "fired for tick" in (tmp_path / f"scheduler-{i}.log").read_text()]
    assert firing, "no scheduler logged a tick"
