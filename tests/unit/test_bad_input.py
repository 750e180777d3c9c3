"""Bad input caught before anything reaches a server: arguments msgpack
cannot carry, bad flags and settings, bad schedules, and jobs a worker
cannot run (checked at the executor, no server needed)."""

from __future__ import annotations

import datetime as dt
import math
import re
import socket
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from taskq import ConfigurationError, PayloadTooLarge, TaskQ, codec, signing
from taskq.worker.executor import ClaimedJob, Executor

# A pickle (protocol 0) that would run os.system when unpickled.
PICKLE_EXPLOIT = b"cos\nsystem\n(S'touch /tmp/taskq-pwned'\ntR."
FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def offline_app(**kwargs: Any) -> TaskQ:
    """An app whose server is a closed port: a test that reaches it fails loudly."""
    kwargs.setdefault("enqueue_retry_timeout", 0.1)
    return TaskQ("unit", f"redis://127.0.0.1:{_closed_port()}/0", **kwargs)


def claimed(task: str, payload: bytes, *, opts: bytes = b"", sig: str = "", job_id: str = "j1") -> ClaimedJob:
    """A job as the claim script returns it."""
    return ClaimedJob([job_id.encode(), b"1", b"1", task.encode(), payload, opts, sig.encode(), b"default", b"0"])


def run(app: TaskQ, job: ClaimedJob) -> tuple[str, dict[str, Any]]:
    """Run one job in an executor; returns (outcome kind, error entry)."""
    started: list[str] = []
    out = Executor(app, None, lambda j, deadline: started.append(j.id)).run(job)  # type: ignore[arg-type]
    return out.kind, (codec.loads(out.blob) if out.blob else {})


# ---------------------------------------------------------------- arguments


def test_unserialisable_positional_argument_raises_type_error_naming_it():
    app = offline_app()
    task = app.task(name="t")(lambda *a, **k: None)
    with pytest.raises(TypeError, match=r"positional argument 1 cannot be serialized with msgpack.*object"):
        task.delay(1, object())


def test_unserialisable_keyword_argument_raises_type_error_naming_it():
    app = offline_app()
    task = app.task(name="t")(lambda *a, **k: None)
    with pytest.raises(TypeError, match=r"argument 'callback' cannot be serialized with msgpack.*function"):
        task.delay(1, callback=lambda: None)
    with pytest.raises(TypeError, match=r"argument 'items' cannot be serialized"):
        task.delay(items={1, 2})  # a set nested in nothing msgpack knows


def test_integer_too_large_for_msgpack_is_named():
    app = offline_app()
    task = app.task(name="t")(lambda *a: None)
    with pytest.raises(TypeError, match="positional argument 0"):
        task.delay(2**70)


def test_payload_over_max_payload_bytes_raises_before_any_server_call():
    app = offline_app(max_payload_bytes=1000)
    task = app.task(name="t")(lambda *a: None)
    with pytest.raises(PayloadTooLarge, match=r"arguments of t encode to \d+ bytes, over max_payload_bytes=1000"):
        task.delay("x" * 2000)


def test_default_payload_limit_is_512_kib():
    app = offline_app()
    assert app.settings.max_payload_bytes == 512 * 1024
    task = app.task(name="t")(lambda *a: None)
    with pytest.raises(PayloadTooLarge):
        task.delay(b"\0" * (512 * 1024 + 1))


@pytest.mark.parametrize("value", [0, -1, "lots", 1.5, True])
def test_bad_max_payload_bytes_is_a_configuration_error(value):
    with pytest.raises(ConfigurationError, match="max_payload_bytes must be an int >= 1"):
        offline_app(max_payload_bytes=value)


# ---------------------------------------------------------------- flags and settings


@pytest.mark.parametrize(("flags", "message"), [
    ({"retry": -1}, "retry must be an int >= 0, not -1"),
    ({"retry": "3"}, "retry must be an int >= 0"),
    ({"timeout": "soon"}, "timeout must be a number of seconds, not 'soon'"),
    ({"timeout": -5}, "timeout must be >= 0"),
    ({"delay": -1}, "delay must be >= 0, not -1"),
    ({"retry_on": [42]}, "retry_on takes exception classes or their names"),
    ({"retyr": 3}, "unknown task flag 'retyr'; known: "),
])
def test_bad_decorator_flag_raises_at_decoration(flags, message):
    app = offline_app()
    with pytest.raises(ConfigurationError, match=message.replace("(", r"\(")):
        app.task(name="t", **flags)(lambda: None)
    assert "t" not in app.tasks


@pytest.mark.parametrize(("task_flags", "message"), [
    ({"t": {"retyr": 1}}, r"unknown flag in task_flags\['t'\]: 'retyr'"),
    ({"t": {"retry": -1}}, r"task_flags\['t'\]: retry must be an int >= 0, not -1"),
    ({"t": {"timeout": "abc"}}, r"task_flags\['t'\]: timeout must be a number of seconds, not 'abc'"),
    ({"t": 3}, r"task_flags\['t'\] must be a dict of flags"),
    ([("t", {})], "task_flags must map task names to flag dicts"),
])
def test_bad_settings_task_flags_raise_at_construction(task_flags, message):
    with pytest.raises(ConfigurationError, match=message):
        offline_app(settings={"task_flags": task_flags})


def test_bad_task_defaults_and_unknown_settings_raise_at_construction():
    with pytest.raises(ConfigurationError, match="retry must be an int >= 0"):
        offline_app(settings={"task_defaults": {"retry": -2}})
    with pytest.raises(ConfigurationError, match=r"unknown flag in task_defaults: 'tmeout'"):
        offline_app(settings={"task_defaults": {"tmeout": 1}})
    with pytest.raises(ConfigurationError, match=r"unknown setting\(s\) 'redis_ulr'"):
        offline_app(settings={"redis_ulr": "redis://x"})


def test_task_flags_naming_no_task_warn_by_name_at_check_settings():
    app = offline_app(settings={"task_flags": {"reports.nightly": {"retry": 1}, "t": {"retry": 2}}})
    app.task(name="t")(lambda: None)
    with pytest.warns(UserWarning, match="task_flags names task 'reports.nightly', which no registered task has"):
        assert app.check_settings() == ["reports.nightly"]


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:6379/0", "one of the following schemes"),
    ("redis://127.0.0.1:notaport/0", "Port could not be cast"),
    ("redis://127.0.0.1:99999/0", "Port out of range"),
    ("redis://127.0.0.1:6379/zero", "the database .* must be a number"),
    ("redis://127.0.0.1:6379/0?socket_timeout=abc", "socket_timeout"),
    ("redis://127.0.0.1:6379/0?sockettimeout=1", "sockettimeout"),
    ("rediss://127.0.0.1:6379/0?ssl_cert_reqs=bogus", "Certificate Requirements"),
])
def test_a_bad_server_url_is_a_configuration_error_at_construction(url, message):
    with pytest.raises(ConfigurationError, match=message):
        TaskQ("unit", url)
    with pytest.raises(ConfigurationError, match=message):
        TaskQ("unit", settings={"redis_url": url})


def test_a_bad_server_url_never_shows_its_password():
    # an unencoded '#' ends the host part early: the parser reads the password as the port
    url = "redis://:s3cr3t#x@127.0.0.1:6379/0"
    with pytest.raises(ConfigurationError) as err:
        TaskQ("unit", url)
    assert "s3cr3t" not in str(err.value)
    assert "redis://:***@127.0.0.1:6379/0" in str(err.value)


@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379", "redis://127.0.0.1:6379/", "redis://127.0.0.1:6379/3",
                                 "rediss://user:pw@127.0.0.1:6380/0?ssl_cert_reqs=none", "unix:///tmp/taskq.sock?db=2",
                                 "redis://127.0.0.1:6379/0\n", "redis://127.0.0.1:6379/x?db=1"])
def test_good_server_urls_are_accepted_without_connecting(url):
    TaskQ("unit", url).close()


# ---------------------------------------------------------------- schedules


@pytest.mark.parametrize("cron", ["not a cron", "61 * * * *", "* * * *", ""])
def test_bad_cron_expression_raises_with_croniters_reason(cron):
    app = offline_app()
    with pytest.raises(ConfigurationError, match=re.escape(f"bad cron expression {cron!r}: ") + ".+"):
        app.periodic(cron)
    assert not app.periodics


def test_periodic_needs_exactly_one_schedule_and_a_known_zone():
    app = offline_app()
    with pytest.raises(ConfigurationError, match="exactly one of a cron expression or every="):
        app.periodic()
    with pytest.raises(ConfigurationError, match="unknown time zone 'Mars/Olympus'"):
        app.periodic("* * * * *", tz="Mars/Olympus")
    with pytest.raises(ConfigurationError, match="every= must be at least 1 second"):
        app.periodic(every=0.1)


@pytest.mark.parametrize("tz", [2, 1.5, dt.timedelta(hours=2), b"Europe/Paris"])
def test_a_time_zone_of_the_wrong_type_is_named_as_such(tz):
    """With a cron string it was reported as a "bad cron expression"; with
    every= it was accepted."""
    app = offline_app()
    for schedule in ({"cron": "0 9 * * *"}, {"every": 60}):
        with pytest.raises(ConfigurationError, match=re.escape(f"tz must be a time zone name or a tzinfo, not {tz!r}")):
            app.periodic(**schedule, tz=tz)
    assert not app.periodics


def test_naive_eta_is_a_configuration_error():
    app = offline_app()
    task = app.task(name="t")(lambda: None)
    with pytest.raises(ConfigurationError, match="eta must be timezone-aware"):
        task.apply_async(eta=dt.datetime.now() + dt.timedelta(minutes=1))
    with pytest.raises(ConfigurationError, match="eta must be a timezone-aware datetime, not str"):
        task.apply_async(eta="tomorrow")  # type: ignore[arg-type]


@pytest.mark.parametrize("delay", [-1, -0.001, dt.timedelta(seconds=-1), "later"])
def test_negative_or_non_numeric_delay_is_a_configuration_error(delay):
    app = offline_app()
    task = app.task(name="t")(lambda: None)
    with pytest.raises(ConfigurationError, match="delay must be"):
        task.apply_async(delay=delay)


@pytest.mark.parametrize("value", [math.inf, 1e17, 1e300])
def test_an_infinite_or_endless_delay_or_interval_is_a_configuration_error(value):
    """inf raised OverflowError; 1e17 s was accepted and its due time, in ms,
    wrapped around on the server: the job ran at once."""
    app = offline_app()
    task = app.task(name="t")(lambda: None)
    with pytest.raises(ConfigurationError, match=r"delay must be at most 8.64e\+13 seconds"):
        task.apply_async(delay=value)
    with pytest.raises(ConfigurationError, match=r"delay must be at most 8.64e\+13 seconds"):
        app.task(name="later", delay=value)(lambda: None)
    with pytest.raises(ConfigurationError, match=r"every must be at most 8.64e\+13 seconds"):
        app.periodic(every=value)
    assert not app.periodics


def test_unknown_per_call_option_is_a_configuration_error():
    app = offline_app()
    task = app.task(name="t")(lambda: None)
    with pytest.raises(ConfigurationError, match="unknown task option 'retries'"):
        task.apply_async(retries=3)


# ---------------------------------------------------------------- the executor


def test_unknown_task_fails_with_the_name_and_the_known_tasks():
    app = offline_app()
    app.task(name="add")(lambda a, b: a + b)
    kind, err = run(app, claimed("no.such.task", codec.encode_args((), {})))
    assert kind == "fail"
    assert err["type"] == "UnknownTask"
    assert err["message"].startswith("unknown task 'no.such.task' in namespace 'unit'; this worker (app 'unit') "
                                     "knows: add. A job of another app sharing the namespace?")


@pytest.mark.parametrize("payload", [
    b"", b"\xc1", PICKLE_EXPLOIT, b"\x80\x04\x95", codec.dumps(5), codec.dumps([1]), codec.dumps([[1], {}, 3]),
    codec.dumps([{}, []]), codec.dumps({"args": [], "kwargs": {}}), codec.dumps([[], {1: 2}]),
    codec.dumps([[], {}]) + b"\x00", msgpack.packb([[msgpack.ExtType(99, b"x")], {}]),
    msgpack.packb([[msgpack.ExtType(1, b"not a date")], {}]), msgpack.packb([[msgpack.ExtType(6, b"\xc1")], {}]),
    msgpack.packb([[msgpack.ExtType(6, msgpack.packb([10**18, 0, 0]))], {}]),
], ids=lambda p: repr(p)[:40])
def test_undecodable_payload_fails_as_undecodable_and_never_runs_the_task(payload):
    app = offline_app()
    ran: list[Any] = []
    app.task(name="t")(lambda *a, **k: ran.append((a, k)))
    kind, err = run(app, claimed("t", payload))
    assert kind == "fail"
    assert err["message"].startswith("undecodable payload: ")
    assert ran == []


def test_a_dict_keyed_by_tuples_is_accepted_at_enqueue_and_runs_in_the_worker():
    """Enqueue took {(x, y): v}; the executor then failed the job as an
    undecodable payload (unhashable type: 'list'), on every attempt."""
    app = offline_app()
    seen: list[Any] = []
    task = app.task(name="t")(lambda grid: seen.append(grid))
    payload = codec.encode_args(({(0, 1): "a"},), {})  # what task.delay({(0, 1): "a"}) stores
    kind, err = run(app, claimed(task.name, payload))
    assert (kind, err) == ("ok", {})
    assert seen == [{(0, 1): "a"}]


def test_undecodable_per_call_options_fail_the_job():
    app = offline_app()
    app.task(name="t")(lambda: None)
    for opts in (b"\xc1", codec.dumps([1, 2]), codec.dumps({"retry": -1}), codec.dumps({"nope": 1})):
        kind, err = run(app, claimed("t", codec.encode_args((), {}), opts=opts))
        assert kind == "fail"
        assert err["message"].startswith("undecodable payload: "), err["message"]


def test_worker_with_a_secret_rejects_unsigned_and_tampered_jobs():
    app = offline_app(secret_key="k1")
    app.task(name="t")(lambda *a: "ran")
    payload = codec.encode_args((1,), {})
    kind, err = run(app, claimed("t", payload))
    assert (kind, err["type"]) == ("fail", "SignatureError")
    assert "not signed" in err["message"]
    good = signing.sign("k1", "j1", "t", payload)
    assert run(app, claimed("t", payload, sig=good))[0] == "ok"
    kind, err = run(app, claimed("t", codec.encode_args((2,), {}), sig=good))
    assert (kind, err["type"]) == ("fail", "SignatureError")
    assert "does not match any accepted key" in err["message"]
    assert "k1" not in err["message"]


@FUZZ
@given(st.binary(max_size=64))
def test_decoding_random_bytes_raises_only_value_error(data):
    try:
        args, kwargs = codec.decode_args(data)
    except ValueError as exc:
        assert str(exc).startswith("undecodable payload: ")
    else:
        assert isinstance(args, list) and isinstance(kwargs, dict)


_ints = st.integers(-(2**63), 2**64 - 1)  # what msgpack can carry
_values = st.recursive(
    st.none() | st.booleans() | _ints | st.floats() | st.text(max_size=8)
    | st.binary(max_size=8) | st.builds(msgpack.ExtType, st.integers(0, 127), st.binary(max_size=8)),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4) | _ints, inner, max_size=3),
    max_leaves=8,
)


@FUZZ
@given(st.one_of(_values, st.tuples(st.lists(_values, max_size=2), st.dictionaries(st.text(max_size=4), _values,
                                                                                    max_size=2)).map(list)))
def test_decoding_random_msgpack_values_raises_only_value_error(value):
    try:
        args, kwargs = codec.decode_args(msgpack.packb(value, use_bin_type=True))
    except ValueError as exc:
        assert str(exc).startswith("undecodable payload: ")
    else:
        assert isinstance(args, list) and isinstance(kwargs, dict)
        assert all(isinstance(k, str) for k in kwargs)
