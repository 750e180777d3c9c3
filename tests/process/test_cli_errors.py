"""The ``taskq`` command given bad input: a wrong app path, a module that
fails to import, a missing job, a bad state name, a server that is down.
Each prints one clear line and exits non-zero -- never a traceback."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest
import redis

from taskq import JobState
from taskq import embedded as srv
from taskq.embedded import EphemeralServer
from tests.apps.basic import build
from tests.conftest import ROOT, drain, wait_for

APP = "tests.apps.basic:app"


def taskq(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "taskq_cli.main", *args], cwd=ROOT, env=env, text=True,
                          capture_output=True, timeout=timeout, stdin=subprocess.DEVNULL)


def assert_one_clear_line(proc: subprocess.CompletedProcess[str], *expected: str) -> str:
    """Non-zero exit, no traceback, a single ``Error: ...`` line holding ``expected``."""
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Traceback" not in out, out
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, out
    assert lines[0].startswith("Error: "), out
    for text in expected:
        assert text in lines[0], out
    return lines[0]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Every command that takes an app, with the app given as PATH.
COMMANDS = [
    ["worker", "{app}"], ["scheduler", "{app}"], ["recover", "{app}"], ["periodic", "list", "{app}"],
    ["jobs", "-A", "{app}"], ["jobs", "-A", "{app}", "--state", "failed"],
    ["job", "show", "J1", "-A", "{app}"], ["job", "cancel", "J1", "-A", "{app}"],
    ["job", "requeue", "J1", "-A", "{app}"], ["job", "stall", "J1", "-A", "{app}"],
    ["job", "unstall", "J1", "-A", "{app}"], ["job", "retract", "J1", "-A", "{app}"],
    ["job", "delete", "J1", "-A", "{app}"], ["failed", "list", "-A", "{app}"],
    ["failed", "requeue", "-A", "{app}"], ["failed", "purge", "--yes", "-A", "{app}"],
    ["purge", "-Q", "default", "--yes", "-A", "{app}"],
]

BAD_APPS = {
    "tests.apps.nope": "cannot import module 'tests.apps.nope': ModuleNotFoundError: No module named 'tests.apps.nope'",
    "tests.apps.bad": ("cannot import module 'tests.apps.bad': ModuleNotFoundError: "
                       "No module named 'taskq_no_such_dependency'"),
    "tests.apps.basic:build": "tests.apps.basic:build is a function, not a TaskQ",
    "tests.apps.basic:nothing": "tests.apps.basic:nothing does not exist",
    "tests.apps": "module 'tests.apps' has 0 TaskQ instances; name one as tests.apps:ATTR",
}


def test_every_command_given_a_wrong_app_path_prints_one_line_and_exits_non_zero(worker_env):
    commands = [[a.format(app="tests.apps.nope") for a in cmd] for cmd in COMMANDS]
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda cmd: taskq(worker_env, *cmd), commands))
    for cmd, proc in zip(commands, results):
        assert proc.returncode == 1, (cmd, proc.stderr)
        assert_one_clear_line(proc, BAD_APPS["tests.apps.nope"])


@pytest.mark.parametrize("bad_app", BAD_APPS)
def test_worker_and_jobs_given_a_bad_app_say_what_is_wrong_with_it(worker_env, bad_app):
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda cmd: taskq(worker_env, *cmd), [["worker", bad_app], ["jobs", "-A", bad_app]]))
    for proc in results:
        assert proc.returncode == 1, proc.stderr
        assert_one_clear_line(proc, BAD_APPS[bad_app])


def test_worker_with_a_task_module_that_fails_to_import_names_it(worker_env):
    proc = taskq(worker_env, "worker", APP, "--include", "tests.apps.bad")
    assert_one_clear_line(proc, "cannot import task module 'tests.apps.bad'",
                          "No module named 'taskq_no_such_dependency'")


def test_worker_given_an_unknown_task_name_to_serve_says_so(worker_env):
    assert_one_clear_line(taskq(worker_env, "worker", APP, "--tasks", "add,no.such.task"),
                          "--tasks names unknown task(s): no.such.task")


@pytest.mark.parametrize("queues", ["default high", "default,emails:high", "{default}"])
def test_worker_given_a_queue_name_no_job_can_have_says_so(worker_env, queues):
    """Such a worker would serve nothing: a space-separated list is one queue named "default high"."""
    bad = queues.split(",")[-1]
    assert_one_clear_line(taskq(worker_env, "worker", APP, "-Q", queues),
                          f"ConfigurationError: queue names have no spaces, ':' or braces, not {bad!r} "
                          "(separate queues with commas)")


def test_every_command_and_option_has_a_help_text():
    """``taskq --help`` and each group's list show what every command does."""
    import click

    from taskq_cli.main import main

    def missing(cmd: click.Command, path: str) -> list[str]:
        if isinstance(cmd, click.Group):
            return [m for name, sub in cmd.commands.items() for m in missing(sub, f"{path} {name}")]
        out = [] if cmd.get_short_help_str() else [path]
        return out + [f"{path} {p.opts[0]}" for p in cmd.params if isinstance(p, click.Option) and not p.help]

    assert missing(main, "taskq") == []


def test_no_app_given_is_a_usage_error(worker_env):
    env = {k: v for k, v in worker_env.items() if k != "TASKQ_APP"}
    proc = taskq(env, "jobs")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "Error: no app given: pass MODULE[:ATTR] or set TASKQ_APP"


@pytest.mark.parametrize("command", ["show", "cancel", "requeue", "stall", "unstall", "retract", "delete"])
def test_job_commands_on_a_missing_job_say_it_does_not_exist(worker_env, command):
    proc = taskq(worker_env, "job", command, "NOPE", "-A", APP)
    assert_one_clear_line(proc, "JobNotFound: no job 'NOPE'")


def test_jobs_with_an_invalid_state_names_the_choices(worker_env):
    proc = taskq(worker_env, "jobs", "-A", APP, "--state", "bogus")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--state': 'bogus' is not one of 'queued'"), proc.stderr


@pytest.mark.parametrize("command", ["worker", "scheduler"])
def test_an_unknown_log_level_names_the_choices(worker_env, command):
    proc = taskq(worker_env, command, APP, "--loglevel", "bogus", timeout=30)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("Error: Invalid value for '--loglevel' / '-l': 'bogus' is not one of 'debug'"), proc.stderr


@pytest.mark.parametrize("args", [["jobs", "-A", APP], ["jobs", "-A", APP, "--state", "waiting"],
                                  ["job", "show", "J1", "-A", APP], ["recover", APP],
                                  ["worker", APP], ["failed", "list", "-A", APP], ["periodic", "list", APP]])
def test_commands_against_a_server_that_is_down_print_one_line_without_the_password(worker_env, args):
    env = {**worker_env, "TASKQ_REDIS_URL": f"redis://user:hunter2@127.0.0.1:{_closed_port()}/0",
           "TASKQ_ENQUEUE_RETRY_TIMEOUT": "0.2"}
    proc = taskq(env, *args)
    if args[:2] == ["periodic", "list"]:  # basic has no periodic task: it never needs the server
        assert proc.returncode == 0 and proc.stdout.strip() == "no periodic tasks"
        return
    line = assert_one_clear_line(proc, "BrokerUnavailable: cannot reach the server at redis://user:***@127.0.0.1:")
    assert "hunter2" not in proc.stdout + proc.stderr
    assert line


@pytest.mark.parametrize("url, expected", [
    ("redis://user:hunter2@127.0.0.1:notaport/0",
     "ConfigurationError: redis_url redis://user:***@127.0.0.1:notaport/0 is not a usable server URL: Port could "
     "not be cast to integer"),
    ("redis://127.0.0.1:99999/0", "ConfigurationError: redis_url redis://127.0.0.1:99999/0 is not a usable server URL: Port out of range"),
    ("http://127.0.0.1:1/0", "ConfigurationError: redis_url http://127.0.0.1:1/0 is not a usable server URL: Redis URL must specify"),
    ("redis://user:hunter2@127.0.0.1:1/0?socket_timeout=soon",
     "ConfigurationError: redis_url redis://user:***@127.0.0.1:1/0?socket_timeout=soon is not a usable server URL"),
    ("{server}/99", "BrokerRefused: server at {server}/99 has no such database"),
])
def test_a_bad_server_url_is_one_line_naming_it(worker_env, url, expected):
    server = worker_env["TASKQ_REDIS_URL"].rsplit("/", 1)[0]
    env = {**worker_env, "TASKQ_REDIS_URL": url.format(server=server)}
    commands = [["jobs", "-A", APP], ["job", "stall", "J1", "-A", APP], ["worker", APP]]
    with ThreadPoolExecutor(3) as pool:
        results = list(pool.map(lambda cmd: taskq(env, *cmd), commands))
    for proc in results:
        assert_one_clear_line(proc, expected.format(server=server))
        assert "hunter2" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("json_flag", [[], ["--json"]])
def test_status_watch_stops_with_one_line_on_errors_retrying_cannot_mend(worker_env, own_server, json_flag):
    """--watch rides out a server that is down; a refused password or a bad URL ends it at once."""
    with redis.Redis(host="127.0.0.1", port=own_server.port) as r:
        r.config_set("requirepass", "right-password")
    refused = {**worker_env, "TASKQ_REDIS_URL": f"redis://default:wrong-password@127.0.0.1:{own_server.port}/0"}
    bad_url = {**worker_env, "TASKQ_REDIS_URL": "http://127.0.0.1:1/0"}
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(lambda env: taskq(env, "status", APP, "--watch", *json_flag, timeout=30),
                                [refused, bad_url]))
    assert_one_clear_line(results[0], "BrokerRefused: server at redis://default:***@127.0.0.1:")
    assert_one_clear_line(results[1], "ConfigurationError: redis_url http://127.0.0.1:1/0 is not a usable server URL")


@pytest.mark.parametrize("state", ["queued", "waiting"])
def test_jobs_against_a_server_that_refuses_the_password_print_one_line(worker_env, own_server, state):
    with redis.Redis(host="127.0.0.1", port=own_server.port) as r:
        r.config_set("requirepass", "right-password")
    env = {**worker_env, "TASKQ_REDIS_URL": f"redis://default:wrong-password@127.0.0.1:{own_server.port}/0"}
    proc = taskq(env, "jobs", "-A", APP, "--state", state)
    assert_one_clear_line(proc, "BrokerRefused: server at redis://default:***@127.0.0.1:", "refused the credentials")
    assert "wrong-password" not in proc.stdout + proc.stderr


def test_failed_requeue_and_purge_refused_by_the_server_fail_instead_of_counting_none(worker_env, own_server,
                                                                                    namespace):
    app = build(own_server.url, namespace)
    try:
        jobs = [app.enqueue("fail", str(i)) for i in range(3)]
        drain(app, jobs)
        with redis.Redis(host="127.0.0.1", port=own_server.port) as r:  # may read, may not push or delete
            r.acl_setuser("reader", enabled=True, passwords=["+reader-pw"], keys=["*"],
                          commands=["+@all", "-lpush", "-rpush", "-del", "-unlink"])
        env = {**worker_env, "TASKQ_REDIS_URL": f"redis://reader:reader-pw@127.0.0.1:{own_server.port}/0"}
        listed = taskq(env, "failed", "list", "-A", APP)
        assert listed.returncode == 0 and all(j.id in listed.stdout for j in jobs), listed.stderr
        for args in (["failed", "requeue"], ["failed", "purge", "--yes"]):
            proc = taskq(env, *args, "-A", APP)
            assert_one_clear_line(proc, "BrokerRefused: server refused the command (ACL)")
            assert proc.stdout == ""
        assert all(j.state == JobState.FAILED for j in jobs)
    finally:
        app.close()


@pytest.mark.parametrize("home", ["file", "file/sub"])
def test_an_embedded_server_home_that_cannot_be_a_directory_is_one_line(worker_env, tmp_path, home):
    (tmp_path / "file").write_text("not a directory\n")
    env = {k: v for k, v in worker_env.items() if k != "TASKQ_REDIS_URL"}
    env["TASKQ_HOME"] = str(tmp_path / home)
    proc = taskq(env, "jobs", "-A", APP)
    assert_one_clear_line(proc, f"ServerStartError: cannot use {tmp_path / home} for the embedded server")
    assert (tmp_path / "file").read_text() == "not a directory\n"


def test_server_stop_that_times_out_is_one_line_naming_the_pid_to_kill(worker_env, tmp_path):
    """A server with a replica that lags waits for it (up to its shutdown-timeout) before it exits."""
    home = tmp_path / "home"
    env = {**{k: v for k, v in worker_env.items() if k != "TASKQ_REDIS_URL"}, "TASKQ_HOME": str(home)}
    url = srv.ensure_embedded_server(home)
    with redis.Redis.from_url(url) as r:
        pid = int(r.info("server")["process_id"])
    replica = socket.socket(socket.AF_UNIX)
    try:
        with redis.Redis.from_url(url) as r:
            replica.connect(url.removeprefix("unix://"))
            replica.sendall(b"SYNC\r\n")  # and never acknowledges anything
            wait_for(lambda: r.info("replication")["connected_slaves"] == 1, what="the replica")
            r.set("k", "v")  # the replica lags behind this write
        proc = taskq(env, "server", "stop", "--timeout", "0.2")
        line = assert_one_clear_line(
            proc, f"ServerStopError: the embedded server of {home} (pid {pid}) did not exit within 0.2s of SHUTDOWN",
            f"see {home / 'server.log'}, or end it at once with `kill -9 {pid}`")
        assert line.endswith(f"`kill -9 {pid}`") and srv._pid_alive(pid)
        os.kill(pid, signal.SIGKILL)  # as the message says
        wait_for(lambda: not srv._pid_alive(pid), what="the server to exit")
        gone = taskq(env, "server", "status")
        assert gone.returncode == 1 and gone.stdout.strip() == f"no embedded server running for {home}"
    finally:
        replica.close()
        if srv._pid_alive(pid):
            os.kill(pid, signal.SIGKILL)


def test_worker_warns_at_startup_about_task_flags_naming_no_task(start_worker, tmp_path):
    (tmp_path / "flagged_app.py").write_text(textwrap.dedent("""
        from taskq import TaskQ

        app = TaskQ("flagged", settings={"task_flags": {"reports.nightly": {"retry": 3}}})

        @app.task(name="add")
        def add(a, b):
            return a + b
    """))
    w = start_worker("flagged_app:app", env={"PYTHONPATH": f"{ROOT}:{tmp_path}"})
    wait_for(lambda: "reports.nightly" in w.log(), 20, what="the warning in the worker log")
    assert "settings task_flags names task 'reports.nightly', which no registered task has" in w.log()
    assert "Traceback" not in w.log()


@pytest.mark.parametrize("flags", ["{'retyr': 3}", "{'retry': -1}"])
def test_worker_refuses_to_start_with_bad_task_flags_in_settings(worker_env, tmp_path, flags):
    (tmp_path / "badflags_app.py").write_text(
        f"from taskq import TaskQ\napp = TaskQ('bad', settings={{'task_flags': {{'add': {flags}}}}})\n")
    proc = taskq({**worker_env, "PYTHONPATH": f"{ROOT}:{tmp_path}"}, "worker", "badflags_app:app")
    assert_one_clear_line(proc, "cannot import module 'badflags_app': ConfigurationError:", "task_flags['add']")


def test_worker_log_never_shows_the_password_or_secret_key(start_worker, tmp_path, namespace):
    password, secret = "pw-hunter2-xyzzy", "signing-key-swordfish"
    with EphemeralServer() as server:
        with redis.Redis(host="127.0.0.1", port=server.port) as r:
            r.config_set("requirepass", password)
        url = f"redis://default:{password}@127.0.0.1:{server.port}/0"
        w = start_worker(APP, "--loglevel", "DEBUG", env={"TASKQ_REDIS_URL": url, "TASKQ_SECRET_KEY": secret})
        producer = build(url, namespace)  # unsigned: the worker rejects its job and logs why
        try:
            job = producer.enqueue("add", 1, 2)
            wait_for(lambda: job.state.finished, 20, what="the unsigned job to be rejected")
            assert job.info().errors[-1]["type"] == "SignatureError"
        finally:
            producer.close()
        w.stop()
    log = w.log()
    assert "SignatureError" in log and "default:***@" in log
    assert password not in log and secret not in log
