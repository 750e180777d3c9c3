"""Task flags: validation at decoration time and the precedence of sources."""

from __future__ import annotations

import sys
import types

import pytest

from taskq import ConfigurationError, TaskQ
from taskq.options import TaskOptions, parse_priority


def offline_app(**kwargs) -> TaskQ:
    return TaskQ("t", "redis://127.0.0.1:1/0", **kwargs)  # never connects in these tests


def test_default_task_name_is_module_and_function():
    app = offline_app()

    @app.task
    def ping() -> str:
        return "pong"

    assert ping.name == f"{__name__}.test_default_task_name_is_module_and_function.<locals>.ping"
    assert ping() == "pong"  # calling runs in-process


@pytest.mark.parametrize("flags", [{"retry": -1}, {"timeout": "soon"}, {"retry": 1.5}, {"on_locked": "block"},
                                   {"priority": "urgent"}, {"delay": -1}, {"retry_backoff": 0.5}])
def test_bad_flag_values_raise_at_decoration(flags):
    app = offline_app()
    with pytest.raises(ConfigurationError):
        app.task(**flags)(lambda: None)


def test_unknown_flag_raises_and_names_it():
    app = offline_app()
    with pytest.raises(ConfigurationError, match="'retries'"):
        app.task(retries=3)(lambda: None)


def test_precedence_settings_over_decorator_over_task_defaults_over_builtin():
    app = offline_app(settings={"task_flags": {"t.a": {"retry": 5}},
                                "task_defaults": {"retry": 1, "timeout": 9, "retry_interval": 2}})

    @app.task(name="t.a", retry=3, timeout=30)
    def a() -> None: ...

    @app.task(name="t.b", timeout=7)
    def b() -> None: ...

    assert a.options.retry == 5  # settings beat decorator
    assert a.options.timeout == 30  # decorator beats task_defaults
    assert a.options.retry_interval == 2  # task_defaults beat built-in
    assert b.options.retry == 1
    assert b.options.retry_backoff == 1.0  # built-in default


def test_per_call_option_beats_everything():
    opts = TaskOptions(retry=3).merged({"retry": 0})
    assert opts.retry == 0


def test_settings_module_and_environment(monkeypatch):
    mod = types.ModuleType("fake_taskq_settings")
    mod.TASK_FLAGS = {"t.x": {"timeout": 3}}
    mod.HEARTBEAT_TIMEOUT = 20
    monkeypatch.setitem(sys.modules, "fake_taskq_settings", mod)
    monkeypatch.setenv("TASKQ_HEARTBEAT_TIMEOUT", "15")
    monkeypatch.setenv("TASKQ_MAX_PAYLOAD_BYTES", "1000")
    app = offline_app(settings="fake_taskq_settings")
    assert app.settings.heartbeat_timeout == 20  # settings beat environment
    assert app.settings.max_payload_bytes == 1000  # environment beats default
    assert offline_app(settings="fake_taskq_settings", heartbeat_timeout=3).settings.heartbeat_timeout == 3
    assert app.options_for("t.x").timeout == 3


def test_comma_lists_from_the_environment_ignore_spaces_around_commas(monkeypatch):
    monkeypatch.setenv("TASKQ_INCLUDE", "app.tasks, app.reports ,")
    monkeypatch.setenv("TASKQ_OLD_SECRET_KEYS", "old-one, old-two")
    settings = offline_app().settings
    assert settings.include == ("app.tasks", "app.reports")
    assert settings.old_secret_keys == ("old-one", "old-two")


def test_unknown_task_in_settings_warns_by_name():
    app = offline_app(settings={"task_flags": {"nope.task": {"retry": 1}}})
    with pytest.warns(UserWarning, match="nope.task"):
        app.check_settings()


def test_unknown_setting_and_unknown_flag_in_settings_raise():
    with pytest.raises(ConfigurationError, match="heartbeat"):
        offline_app(settings={"heartbeat": 3})
    with pytest.raises(ConfigurationError, match="retries"):
        offline_app(settings={"task_flags": {"x": {"retries": 3}}})


def test_priority_levels():
    assert parse_priority("high") > parse_priority("normal") > parse_priority("low")
    assert parse_priority(42) == 42
    with pytest.raises(ConfigurationError):
        parse_priority(1000)


def test_retry_delay_backoff_cap_and_jitter():
    o = TaskOptions(retry=5, retry_interval=1, retry_backoff=2, retry_max_interval=5, retry_jitter=0.5)
    assert [o.retry_delay(a, rand=0.5) for a in (1, 2, 3, 4)] == [1, 2, 4, 5]
    assert o.retry_delay(1, rand=0.0) == 0.5 and o.retry_delay(1, rand=1.0) == 1.5


def test_secrets_are_not_in_repr():
    app = TaskQ("t", "redis://u:pw0rd@localhost:1/0", secret_key="topsecret")
    for text in (repr(app.settings), repr(app)):
        assert "topsecret" not in text and "pw0rd" not in text


def test_the_task_decorator_keeps_the_function_signature_for_type_checkers():
    """``@app.task`` and ``@app.periodic`` give a ``Task[P, R]`` of the
    function's parameters and return type, so ``.delay()`` arguments and
    direct calls are type-checked."""
    import typing
    from collections.abc import Callable

    from taskq import Task, registry

    sig = Task[registry.P, registry.R]  # type: ignore[attr-defined]
    decorator = Callable[[Callable[registry.P, registry.R]], sig]  # type: ignore[attr-defined]
    bare, with_flags = typing.get_overloads(TaskQ.task)
    assert typing.get_type_hints(bare)["return"] == sig
    assert typing.get_type_hints(with_flags)["return"] == decorator
    assert typing.get_type_hints(TaskQ.periodic)["return"] == decorator
