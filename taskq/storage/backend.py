"""The Redis adapter: connections, script calls, reads. The only module
(with ``server.py``) that imports ``redis``.

Policy (when to retry, how long to keep a job) lives in the callers; this
module knows key names and commands, and turns Redis errors into taskq's.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import os
import re
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import (BrokerRefused, BrokerUnavailable, ConfigurationError, DurabilityUnavailable, ServerLoading,
                      TaskQError, error_for_code)
from .keys import Keys
from .scripts import load_library
from .wire import Wire, pack, packed

log = logging.getLogger("taskq")

Arg = str | bytes | int | float
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)

# Field count per job in enqueue/fire_periodic, per outcome in settle_claim,
# per claimed job in the settle_claim reply.
ENQUEUE_FIELDS = 15
OUTCOME_FIELDS = 10
CLAIM_FIELDS = 8
# How long past its own deadline a bounded call (a result wait) waits for a
# server that does not answer (paused, swapping) before raising.
REPLY_MARGIN = 2.0


def redact_url(url: str) -> str:
    """The URL with any password (in the user info, a ``password=`` query
    parameter or another ``..._password=`` one, such as redis-py's
    ``ssl_password`` for the client key) replaced by ``***``."""
    url = re.sub(r"(//[^:/@]*:)[^/]*@", r"\1***@", url)
    return re.sub(r"([?&][^=&#]*password=)[^&#]*", r"\1***", url, flags=re.IGNORECASE)


def check_url(url: str) -> None:
    """Raise ``ConfigurationError`` for a server URL that cannot be used (a
    scheme other than redis://, rediss:// and unix://, a bad port or host, a
    database that is not a number, an unknown or bad query parameter),
    naming the URL without its secrets. Nothing is connected."""
    try:
        client = redis.Redis.from_url(url)
        pool = client.connection_pool
        path = urllib.parse.unquote(urllib.parse.urlsplit(url).path).replace("/", "")
        if path and "db" not in pool.connection_kwargs and "path" not in pool.connection_kwargs:
            raise ValueError("the database (the URL's path) must be a number")  # redis-py ignores it
        pool.connection_class(**pool.connection_kwargs)  # unknown or bad query parameters
    except (ValueError, TypeError, redis.RedisError) as exc:
        reason, shown, hint = str(exc), redact_url(url), ""
        if "@" in url or shown != url:  # redis-py quotes the part it could not read: it may be the password
            if shown == url or "Port" in reason:  # the user info may have ended early ('/', '#', '?')
                hint = " (percent-encode special characters of a user name or password: '@' as %40, '/' as %2F)"
            if shown == url and "@" in url:
                shown = f"{url.split('://', 1)[0]}://***@{url.rsplit('@', 1)[1]}"
            reason = re.sub(r"'[^']*'", "'***'", reason)
        raise ConfigurationError(f"redis_url {shown} is not a usable server URL: {reason}{hint}") from None


def translated(exc: BaseException, url: str) -> BaseException | None:
    """taskq's error for a redis-py exception (never leaking a password), or
    None to let it through unchanged."""
    if isinstance(exc, NoScriptError):
        return None
    if isinstance(exc, redis.AuthenticationError):  # a ConnectionError to redis-py; retrying cannot help
        return BrokerRefused(f"server at {redact_url(url)} refused the credentials: {exc}")
    if isinstance(exc, redis.BusyLoadingError):  # a ConnectionError too: it answers once loaded
        return ServerLoading(f"server at {redact_url(url)} is still loading its data set: {exc}")
    if isinstance(exc, (RedisConnectionError, RedisTimeoutError)):
        return BrokerUnavailable(f"cannot reach the server at {redact_url(url)}: {exc}")
    if isinstance(exc, ResponseError):
        # redis-py strips the error code (OOM, READONLY, NOPERM) and picks a subclass
        text = str(exc)
        if isinstance(exc, redis.exceptions.OutOfMemoryError) or text.startswith("OOM") or "maxmemory" in text:
            return BrokerRefused(f"server refused the write: out of memory (maxmemory reached): {text}")
        if isinstance(exc, redis.exceptions.ReadOnlyError) or text.startswith("READONLY"):
            return BrokerRefused("server refused the write: it is a read-only replica; point redis_url at the primary")
        if text.startswith("MISCONF"):
            return BrokerRefused(f"server refused the write: it cannot persist to disk: {text}")
        if text.startswith("NOREPLICAS"):
            return BrokerRefused(f"server refused the write: too few replicas in sync (min-replicas-to-write): {text}")
        if "DB index is out of range" in text:  # SELECT of the URL's database, at connect
            return BrokerRefused(f"server at {redact_url(url)} has no such database (see its 'databases' "
                                 f"setting): {text}")
        if text.startswith("BUSY "):  # a script or function runs past busy-reply-threshold: it ends, retry
            return BrokerUnavailable(f"server at {redact_url(url)} is busy running a script: {text}")
        if "unauthenticated" in text:  # Redis answers a long command from a client that did not AUTH so
            return BrokerRefused(f"server at {redact_url(url)} refused the credentials: authentication required")
        if (isinstance(exc, redis.exceptions.NoPermissionError) or text.startswith(("NOPERM", "NOAUTH", "WRONGPASS"))
                or "ACL failure" in text or "can't run this command" in text):  # inside a script
            return BrokerRefused(f"server refused the command (ACL): {text}")
    return None


@contextlib.contextmanager
def translate_errors(url: str) -> Iterator[None]:
    """Map redis-py exceptions to taskq's (see :func:`translated`)."""
    try:
        yield
    except Exception as exc:
        mapped = translated(exc, url)
        if mapped is None:
            raise
        raise mapped from None


def fold_counters(raw: dict[bytes, bytes]) -> tuple[dict[str, int], dict[str, int]]:
    """``st:c`` fields (``<queue>:<task>|<counter>``) summed per task and per
    queue: ``({"<task>|<counter>": n}, {"<queue>|<counter>": n})``."""
    tasks: dict[str, int] = {}
    queues: dict[str, int] = {}
    for f, v in raw.items():
        queue, _, rest = f.decode().partition(":")
        task, _, counter = rest.rpartition("|")
        n = int(v)
        tasks[f"{task}|{counter}"] = tasks.get(f"{task}|{counter}", 0) + n
        queues[f"{queue}|{counter}"] = queues.get(f"{queue}|{counter}", 0) + n
    return tasks, queues


def fold_minute(raw: dict[bytes, bytes]) -> dict[str, int]:
    """A minute bucket (``q:<queue>|<counter>`` fields) with the namespace
    totals (``<counter>``) added."""
    out: dict[str, int] = {}
    for f, v in raw.items():
        field, n = f.decode(), int(v)
        out[field] = n
        counter = field.rpartition("|")[2]
        out[counter] = out.get(counter, 0) + n
    return out


ENQUEUE_COLUMNS = range(ENQUEUE_FIELDS)


def enqueue_args(jobs: Sequence[Sequence[Arg]], check: bool) -> list[Arg]:
    """The enqueue script's arguments after now_ms (see enqueue.lua): the
    check flag and one group, the first job as the template and, per job,
    only the fields that are not the same in every job (for ``map()``:
    the id and the payload). A call whose ids are not all fresh sends a
    mark of the call instead of '1' (see :func:`call_mark`)."""
    n = len(jobs)
    flag = call_mark() if check else "0"
    if n == 1:
        return [flag, 1, "", *jobs[0]]
    columns = list(zip(*jobs))
    cols = [c for c in ENQUEUE_COLUMNS if columns[c].count(columns[c][0]) != n]
    template = list(jobs[0])
    for c in cols:
        template[c] = ""
    args: list[Arg] = [flag, n, " ".join([str(c + 1) for c in cols]), *template]
    if len(cols) == 1:
        args.extend(columns[cols[0]])
    else:
        args.extend(itertools.chain.from_iterable(zip(*[columns[c] for c in cols])))
    return args


def call_mark() -> str:
    """A mark of one enqueue call, stored with each job it creates: every
    send of the call carries it, so a resend after a lost reply that finds
    a job of its id with this mark knows this call created it (``created``)
    rather than an earlier call."""
    return os.urandom(6).hex()


def enqueued(jobs: Sequence[Sequence[Arg]], reply: list[Any]) -> list[tuple[str, bool, str]]:
    """``(id, created, state)`` per job from the enqueue reply: a created
    job's state, or ``[existing id, state]`` for a job that stood in."""
    return [(str(job[0]), True, x.decode()) if isinstance(x, bytes) else (x[0].decode(), False, x[1].decode())
            for job, x in zip(jobs, reply)]


def enqueued_again(jobs: Sequence[Sequence[Arg]], reply: list[Any]) -> list[tuple[str, bool, str]]:
    """:func:`enqueued` for a resend of fresh ids after a lost reply: a job
    found under its own id was created by the first send of this call (no
    one else knows a fresh id), so it counts as created."""
    return [(jid, created or jid == str(job[0]), state)
            for job, (jid, created, state) in zip(jobs, enqueued(jobs, reply))]


class Backend:
    """Redis mechanics for one namespace."""

    def __init__(self, url: str, namespace: str, *, retry_timeout: float = 5.0) -> None:
        self.url = url
        self.keys = Keys(namespace)
        self.prefix = self.keys.prefix
        self.retry_timeout = retry_timeout
        self.library = load_library()
        self.scripts = self.library.scripts
        self.functions: bool | None = None  # FCALL or EVALSHA: decided on first use
        self.multi: bool | None = None  # MULTI/EXEC allowed: decided on first use
        self._tails: dict[tuple[str, str, Arg], tuple[bytes, int]] = {}  # see _plain_tail
        self._tails_minute = -1  # the minute the short tails in _tails are for
        check_url(url)
        self.client = redis.Redis.from_url(
            url, socket_connect_timeout=2.0, socket_timeout=30.0, protocol=2, health_check_interval=0
        )
        self.wire = Wire(self.client)  # the hot path: scripts, claims, result waits

    def close(self) -> None:
        self.wire.close()
        self.client.close()

    # ------------------------------------------------------------ scripts

    def load_code(self, client: Any = None, timeout: float | None = None) -> bool:
        """Load the function library; False if the server cannot (Redis < 7,
        FUNCTION denied by an ACL): scripts are used instead. ``timeout``:
        read timeout (see :meth:`run`)."""
        c = client if client is not None else self.client
        try:
            if client is None and timeout is not None:
                self.wire.call("FUNCTION", "LOAD", self.library.source, timeout=timeout)
            else:
                c.execute_command("FUNCTION", "LOAD", self.library.source)
        except ResponseError as exc:
            text = str(exc).lower()
            if "already exists" in text:
                self.functions = True
                return True
            if isinstance(exc, redis.exceptions.NoPermissionError) or "unknown command" in text or "noperm" in text:
                self.functions = False
                return False
            raise  # out of memory, read-only...: undecided, reported as such
        self.functions = True
        return True

    def command(self, name: str, timeout: float | None = None) -> list[Arg]:
        """The command that runs transition ``name``, up to its arguments."""
        if self.functions is None:
            with translate_errors(self.url):
                try:
                    self.load_code(timeout=timeout)
                except RedisConnectionError:
                    # A server that wants a password cuts off a client that has
                    # not given one in the middle of sending the code: ask why.
                    self.client.ping()
                    raise
        script = self.scripts[name]
        if self.functions:
            return ["FCALL", script.function, 1, self.prefix]
        return ["EVALSHA", script.sha, 1, self.prefix]

    @staticmethod
    def code_missing(exc: BaseException) -> bool:
        """The server lost the code (restart without persistence, FLUSH, failover)."""
        return isinstance(exc, NoScriptError) or (
            isinstance(exc, ResponseError) and "function not found" in str(exc).lower()
        )

    def run(self, name: str, *args: Arg, resend: bool = True, timeout: float | None = None) -> Any:
        """Run transition ``name`` (FCALL, or EVALSHA; reloading lost code).
        ``resend=False``: never send it twice (see ``Wire.pipeline``).
        ``timeout``: read timeout of each reply (the connection's 30 s
        otherwise); a server that does not answer in time is
        ``BrokerUnavailable``."""
        cmd = self.command(name, timeout)
        try:
            return self.wire.call(*cmd, *args, resend=resend, timeout=timeout)
        except Exception as exc:  # the hot path: no context manager
            if not self.code_missing(exc):
                mapped = translated(exc, self.url)
                if mapped is None:
                    raise
                raise mapped from None
        with translate_errors(self.url):
            if self.functions and self.load_code(timeout=timeout):
                return self.wire.call(*self.command(name), *args, timeout=timeout)
            script = self.scripts[name]
            return self.wire.call("EVAL", script.source, 1, self.prefix, *args, timeout=timeout)

    def run_retrying(self, name: str, *args: Arg) -> Any:
        """Run an idempotent script, retrying a lost connection for ``retry_timeout`` s."""
        return self.retrying(lambda: self.run(name, *args))

    def retrying(self, send: Callable[[], Any]) -> Any:
        """Call ``send`` (idempotent) until it does not raise ``BrokerUnavailable``,
        for ``retry_timeout`` s: the last try comes once that much time has passed."""
        deadline = time.monotonic() + self.retry_timeout
        pause = 0.05
        while True:
            try:
                return send()
            except BrokerUnavailable:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise
                time.sleep(min(pause, left))
                pause = min(pause * 2, 1.0)

    def ping(self) -> bool:
        with translate_errors(self.url):
            return bool(self.client.ping())

    def server_time_ms(self) -> int:
        with translate_errors(self.url):
            sec, usec = self.client.time()
        return sec * 1000 + usec // 1000

    def info(self, section: str | None = None) -> dict[str, Any]:
        with translate_errors(self.url):
            return self.client.info(section) if section else self.client.info()

    def config_get(self, name: str) -> str | None:
        with translate_errors(self.url):
            try:
                value = self.client.config_get(name)
            except ResponseError:
                return None  # CONFIG may be disabled or renamed on managed servers
        raw = value.get(name)
        return raw.decode() if isinstance(raw, bytes) else raw

    # ------------------------------------------------------------ enqueue

    def enqueue(self, jobs: Sequence[Sequence[Arg]], now_ms: Arg = "", durable: bool = False,
                fresh: bool = False) -> list[tuple[str, bool, str]]:
        """Create jobs (15 fields each, see enqueue.lua); idempotent by id.

        ``durable``: return only once the server's AOF holds the write (WAITAOF
        on the same connection); a lost connection is retried for
        ``retry_timeout`` s, every send checking the ids.
        A write the AOF does not confirm raises ``DurabilityUnavailable``
        whose ``results`` are what this call would have returned: the jobs
        are enqueued all the same.
        ``fresh``: every id was generated for this call, so no earlier job of
        them left anything behind, and a job a resend finds under one was
        created by this call (a call of other ids marks its jobs for that,
        see :func:`call_mark`). Every send looks for the ids: one that runs
        late must not touch the job its resend created."""
        flat: list[Arg] = [now_ms, *enqueue_args(jobs, check=not fresh)]
        if durable:
            sends = 0

            def send() -> tuple[Any, DurabilityUnavailable | None]:
                nonlocal sends
                sends += 1
                return self._enqueue_durable(flat)

            reply, unconfirmed = self.retrying(send)  # every send checks the ids
            result = (enqueued_again if fresh and sends > 1 else enqueued)(jobs, reply)
            if unconfirmed is not None:
                unconfirmed.results = result  # type: ignore[attr-defined]
                raise unconfirmed
            return result
        if fresh and len(jobs) == 1 and self.plain(jobs[0]):
            try:
                plain = self.enqueue_plain(jobs[0])
            except BrokerUnavailable:  # it may have run: the resend checks the id
                return enqueued_again(jobs, self.run_retrying("enqueue", *flat))
            if plain is not None:
                return [plain]
        if fresh:
            flat[1] = "0"
            try:
                reply = self.run("enqueue", *flat, resend=False)
            except BrokerUnavailable:  # it may have run: the resend checks the ids
                flat[1] = "1"
                return enqueued_again(jobs, self.run_retrying("enqueue", *flat))
        else:
            reply = self.run_retrying("enqueue", *flat)
        return enqueued(jobs, reply)

    def _enqueue_durable(self, flat: list[Arg]) -> tuple[Any, DurabilityUnavailable | None]:
        """Run the enqueue script and WAITAOF on one connection: the script's
        reply, and the error to raise if the AOF did not confirm the write."""
        with translate_errors(self.url):
            for _ in range(2):
                pipe = self.client.pipeline(transaction=False)
                cmd = self.command("enqueue")
                if not self.functions:  # send the source: no NOSCRIPT on this path
                    cmd = ["EVAL", self.scripts["enqueue"].source, 1, self.prefix]
                pipe.execute_command(*cmd, *flat)
                pipe.execute_command("WAITAOF", 1, 0, 2000)
                reply, aof = pipe.execute(raise_on_error=False)
                if not (isinstance(reply, Exception) and self.code_missing(reply)):
                    break
                self.load_code()
        if isinstance(reply, Exception):
            with translate_errors(self.url):
                raise reply
        if isinstance(aof, Exception) or int(aof[0]) < 1:
            return reply, DurabilityUnavailable(
                "durable enqueue needs WAITAOF (Redis >= 7.2 or Valkey) with appendonly on; "
                f"the server said: {aof if isinstance(aof, Exception) else 'not confirmed in time'} "
                "(the job was enqueued, but its persistence is not confirmed)"
            )
        return reply, None

    def plain(self, job: Sequence[Arg]) -> bool:
        """A job that needs no decision on the server: no delay, no unique
        key, no resource (and MULTI/EXEC are allowed)."""
        return not (job[6] or job[7] or job[8] or job[11]) and self.multi_allowed()

    def multi_allowed(self) -> bool:
        """Whether this connection may use MULTI/EXEC (an ACL may deny them);
        asked once."""
        if self.multi is None:
            try:
                with translate_errors(self.url):
                    replies = self.wire.pipeline((("MULTI",), ("EXEC",)))
            except BrokerUnavailable:
                return False  # undecided: the script path retries the connection
            errors = [r for r in replies if isinstance(r, ResponseError)]
            if errors and all(isinstance(r, redis.exceptions.ExecAbortError)
                              or isinstance(translated(r, self.url), BrokerUnavailable) for r in errors):
                return False  # a busy server refused or aborted it: undecided, asked again next time
            self.multi = not errors
        return self.multi

    def enqueue_plain(self, job: Sequence[Arg]) -> tuple[str, bool, str] | None:
        """Create one fresh plain job (see :meth:`plain`) with MULTI/EXEC
        instead of a script: the same keys and fields as enqueue.lua writes,
        as one atomic step, without the script's per-command overhead.

        Invariants (as enqueue.lua): the job's hash and its ready-list entry
        appear together; its level is registered, its queue listed, one
        wake-up marker left for a sleeping worker, the counters bumped.
        Differences: the created time is this process's clock (the script
        reads the server's), and a sleeper is woken on every push. The id is
        fresh, so nothing is checked; sent once (``resend=False``): after a
        lost reply the caller resends through the script, which checks.
        The state is set with ``HSETNX``: this send, run late after that
        resend created the job (a paused server, a retransmitted packet),
        rewrites only the fields that never change and leaves a second
        entry in the ready list, which a claim skips (the job is no longer
        ``queued`` when it meets it, or it is and the entry serves as well).
        None: nothing was created and the script must do it (an ACL that
        denies ``HSETNX``)."""
        jid, task, queue, prio, payload, opts, _, _, _, _, front, _, _, maxa, sig = job
        k = self.keys
        now_ms = int(time.time() * 1000)
        fields: list[Arg] = ["t", task, "q", queue, "p", prio, "d", payload, "c", now_ms]
        for name, value in (("o", opts), ("m", maxa), ("g", sig)):
            if value != "":
                fields += [name, value]
        minute = now_ms // 60000
        tail, tail_replies, full = self._plain_tail(str(task), str(queue), prio, minute)
        jk = k.job(str(jid))
        data = [pack(("MULTI",)), pack(("HSET", jk, *fields)), pack(("HSETNX", jk, "s", "queued")),
                pack(("RPUSH" if front else "LPUSH", k.ready(str(queue), prio), jid)), tail]
        with translate_errors(self.url):
            replies = self.wire.pipeline(((),) * (4 + tail_replies), resend=False, data=[b"".join(data)])
            result = replies[-1]
            if isinstance(result, ResponseError):  # EXECABORT: one was queued with an error, none ran
                refused = next(r for r in replies if isinstance(r, ResponseError))
                if isinstance(refused, redis.exceptions.NoPermissionError) and "'hsetnx'" in str(refused):
                    # an ACL written for an earlier taskq: the script needs no HSETNX
                    log.warning("the server's ACL denies HSETNX: plain jobs are enqueued by the script "
                                "(grant +hsetnx for the faster path, see docs/security.md)")
                    self.multi = False
                    return None
                raise refused
            for reply in result:
                if isinstance(reply, ResponseError):
                    raise reply  # a command that failed inside EXEC (a key of the wrong type)
        if full:
            self._plain_sent(str(task), str(queue), prio, minute)
        elif result[-1] == 1:
            self._plain_restore(str(queue), minute)
        return str(jid), True, "queued"

    def _plain_tail(self, task: str, queue: str, prio: Arg, minute: int) -> tuple[bytes, int, bool]:
        """The packed commands after the push (the same for every job of a
        task, queue and priority in one minute): level, queue, wake-up,
        counters, EXEC; with the number of replies they add, and whether it
        is the full set.

        Registering the queue (SADD) and the minute bucket's expiry (PEXPIRE)
        are idempotent and undone only by a wiped namespace: they go with a
        process's first job of each key in a minute and are left out once that
        call succeeded (:meth:`_plain_sent`). A wipe since then shows in the
        reply: the short tail's bucket counter comes back as 1, where the full
        tail's job had already counted; :meth:`_plain_restore` then sends both
        again. (The schedulers' trim also gives a bucket missing its expiry
        one: trim_finished.lua.)"""
        short = self._tails.get((task, queue, prio)) if minute == self._tails_minute else None
        if short is not None:
            return short[0], short[1], False
        cmds = self._plain_tail_commands(task, queue, prio, minute, register=True)
        return b"".join([pack(c) for c in cmds]), len(cmds), True

    def _plain_tail_commands(self, task: str, queue: str, prio: Arg, minute: int,
                             register: bool) -> list[tuple[Arg, ...]]:
        """The tail's commands; without ``register`` the bucket's counter is
        the last before EXEC (its reply is checked, see :meth:`_plain_tail`)."""
        k = self.keys
        notify, bucket = k.notify(queue), k.stats_minute(minute)
        cmds: list[tuple[Arg, ...]] = [("ZADD", k.priorities(queue), -int(prio), prio)]
        if register:
            cmds.append(("SADD", k.queues, queue))
        cmds += [("LPUSH", notify, 1), ("LTRIM", notify, 0, 0),
                 ("HINCRBY", k.stats_counters, f"{queue}:{task}|enqueued", 1),
                 ("HINCRBY", bucket, f"q:{queue}|enqueued", 1)]
        if register:
            cmds.append(("PEXPIRE", bucket, 7_200_000))
        cmds.append(("EXEC",))
        return cmds

    def _plain_sent(self, task: str, queue: str, prio: Arg, minute: int) -> None:
        """A full tail went through: the next jobs of its key this minute send
        the short one. (No iteration over the cache: other threads may add to
        it; a new minute starts a new dict.)"""
        if minute != self._tails_minute or len(self._tails) > 1000:
            self._tails, self._tails_minute = {}, minute
        cmds = self._plain_tail_commands(task, queue, prio, minute, register=False)
        self._tails[(task, queue, prio)] = (b"".join([pack(c) for c in cmds]), len(cmds))

    def _plain_restore(self, queue: str, minute: int) -> None:
        """The namespace was wiped since the full tail went: register the queue
        and the bucket's expiry again, and send full tails from now on. The
        job itself is enqueued already, so a failure here is only logged."""
        self._tails = {}
        try:
            with translate_errors(self.url):
                self.wire.pipeline((("SADD", self.keys.queues, queue),
                                    ("PEXPIRE", self.keys.stats_minute(minute), 7_200_000)))
        except TaskQError as exc:
            log.warning("could not register queue %r again after its namespace was wiped: %s", queue, exc)

    def enqueue_stream(self, chunks: Iterable[Sequence[Sequence[Arg]]], fresh: bool = False
                       ) -> Iterator[list[tuple[str, bool, str]]]:
        """:meth:`enqueue` for a stream of chunks, yielding each chunk's result in order.

        A chunk is sent without waiting for the previous reply, so the caller
        builds the next chunk while the server runs this one (at most two in
        flight, on one connection). After a lost reply (connection error,
        script cache flushed) that chunk and every later one go through
        :meth:`enqueue`, in order; it retries, and enqueue is idempotent by
        job id. ``fresh``: as for :meth:`enqueue` (only a chunk's first send
        skips the id check).

        On an error (from ``chunks``, or a chunk the server refused or could
        not be sent), the replies of the chunks still in flight are read and
        those that went through are yielded before the error is raised: what
        was yielded is every job the server confirmed."""
        pool = self.client.connection_pool
        conn: Any = None
        enqueue_cmd: list[Arg] = []
        try:
            enqueue_cmd = self.command("enqueue")  # may load the code: asks the server
            conn = pool.get_connection()
        except (BrokerUnavailable, *TRANSIENT):
            pass  # every chunk goes through enqueue(), which retries
        sent: list[tuple[Sequence[Sequence[Arg]], list[Arg], bool]] = []  # in flight: (jobs, args, sent on conn)
        streaming = True  # False once a reply was lost: keeps the chunks in order

        def result() -> list[tuple[str, bool, str]]:
            nonlocal conn, streaming
            jobs, flat, on_conn = sent.pop(0)
            reply = None
            if on_conn and conn is not None:
                try:
                    with translate_errors(self.url):
                        reply = conn.read_response()
                except ResponseError as exc:
                    if not self.code_missing(exc):
                        raise
                    streaming = False  # a chunk in flight behind this one is still read from conn
                except BrokerUnavailable:
                    conn.disconnect()  # the rest goes through enqueue()
                    pool.release(conn)
                    conn = None
            if reply is None:
                if fresh:
                    flat[1] = "1"  # it may have run (a call of ids not all fresh sends its mark)
                reply = self.run_retrying("enqueue", *flat)
                if fresh:
                    return enqueued_again(jobs, reply)
            return enqueued(jobs, reply)

        try:
            for jobs in chunks:
                flat: list[Arg] = ["", *enqueue_args(jobs, check=not fresh)]
                on_conn = False
                streaming = streaming or not sent  # nothing in flight: order is safe again
                if conn is not None and streaming:
                    try:
                        conn.send_packed_command(packed(conn, [(*enqueue_cmd, *flat)]), False)
                        on_conn = True
                    except TRANSIENT:
                        conn.disconnect()  # never reconnect it: replies would no longer match chunks
                        pool.release(conn)
                        conn = None
                sent.append((jobs, flat, on_conn))
                if len(sent) > 1:
                    yield result()
            while sent:
                yield result()
        except Exception:
            while sent and conn is not None:  # sent before the error: they may have gone through
                jobs, _, on_conn = sent.pop(0)
                if not on_conn:
                    continue
                try:
                    reply = conn.read_response()
                except ResponseError:
                    continue  # refused (out of memory, code missing): nothing of it was written
                except (*TRANSIENT, redis.RedisError):
                    conn.disconnect()  # unanswered: whether it and the rest went through is unknown
                    break
                yield enqueued(jobs, reply)
            raise
        finally:
            if conn is not None:
                if any(on_conn for _, _, on_conn in sent):
                    conn.disconnect()  # replies left unread (an error, or the caller stopped)
                pool.release(conn)

    # ------------------------------------------------------------ worker

    def settle_claim_args(
        self,
        worker_id: str,
        count: int,
        outcomes: Sequence[Sequence[Arg]],
        queues: Sequence[str],
        tasks: Sequence[str],
        caps: Sequence[int],
        now_ms: Arg = "",
    ) -> list[Arg]:
        args: list[Arg] = [now_ms, worker_id, count, *caps, len(outcomes)]
        for outcome in outcomes:
            args.extend(outcome)
        args.append(len(queues))
        args.extend(queues)
        args.append(len(tasks))
        args.extend(tasks)
        return args

    @staticmethod
    def parse_settle_claim(reply: list[Any]) -> tuple[list[int], list[list[Any]]]:
        n = int(reply[0])
        settled = [int(x) for x in reply[1 : 1 + n]]
        got = int(reply[1 + n])
        base = 2 + n
        jobs = [reply[base + i * CLAIM_FIELDS : base + (i + 1) * CLAIM_FIELDS] for i in range(got)]
        return settled, jobs

    def settle_claim(self, *args: Any, **kwargs: Any) -> tuple[list[int], list[list[Any]]]:
        """Sent once: after a lost reply the jobs it claimed are leased to this
        worker unknown to it, so the caller must hear of the loss (and release
        them, see release_orphans.lua) rather than claim again."""
        return self.parse_settle_claim(
            self.run("settle_claim", *self.settle_claim_args(*args, **kwargs), resend=False))

    def block_then_claim(
        self, worker_id: str, count: int, queues: Sequence[str], tasks: Sequence[str],
        caps: Sequence[int], timeout: float,
    ) -> tuple[list[int], list[list[Any]]]:
        """Sleep on the queues' wake-up lists, then claim -- one round trip:
        the claim is pipelined behind the BLPOP and runs when it returns."""
        args = self.settle_claim_args(worker_id, count, (), queues, tasks, caps)
        claim_cmd = self.command("settle_claim")
        with translate_errors(self.url):
            _, reply = self.wire.pipeline(
                (("BLPOP", *[self.keys.notify(q) for q in queues], timeout), (*claim_cmd, *args)),
                timeout=timeout + 30.0, resend=False)  # as settle_claim: a lost claim reply must surface
        if isinstance(reply, Exception) and self.code_missing(reply):
            return self.parse_settle_claim(self.run("settle_claim", *args))
        if isinstance(reply, Exception):
            with translate_errors(self.url):
                raise reply
        return self.parse_settle_claim(reply)

    def heartbeat(self, worker_id: str, info_ttl_ms: int, info: dict[str, Arg] | None = None) -> tuple[int, dict[str, int]]:
        flat: list[Arg] = []
        for k, v in (info or {}).items():
            flat += [k, v]
        reply = self.run("heartbeat", "", worker_id, info_ttl_ms, *flat)
        cancels = {reply[i].decode(): int(reply[i + 1]) for i in range(1, len(reply), 2)}
        return int(reply[0]), cancels

    def reap_worker(
        self, worker_id: str, *, expected_hb: int | None, caps: tuple[int, int, int],
        lost_blob: bytes, running: str = "", running_kind: str = "lost",
        running_blob: bytes = b"", running_due_ms: int = 0, now_ms: Arg = "",
    ) -> dict[str, str] | None:
        """Return a dead worker's jobs; None if its heartbeat moved on meanwhile."""
        reply = self.run(
            "reap_worker", now_ms, worker_id, "" if expected_hb is None else expected_hb,
            *caps, lost_blob, running, running_kind, running_blob, running_due_ms,
        )
        if not int(reply[0]):
            return None
        return {reply[i].decode(): reply[i + 1].decode() for i in range(1, len(reply), 2)}

    def reaper_pass(self, timeout_ms: int, max_gap_ms: int, limit: int = 1000,
                    now_ms: Arg = "") -> tuple[str, int, int, list[tuple[str, int]]]:
        """One reaper look (see reaper_pass.lua): why the shared watch
        restarted ('' if it did not), when it began, the server's now, and
        the workers whose silence it has watched for ``timeout_ms``, with
        their heartbeat."""
        reply = self.run("reaper_pass", now_ms, timeout_ms, max_gap_ms, limit)
        rows = [(reply[i].decode(), int(float(reply[i + 1]))) for i in range(3, len(reply), 2)]
        return reply[0].decode(), int(reply[1]), int(reply[2]), rows

    def release_orphans(self, worker_id: str, known: Sequence[str]) -> list[str]:
        return [x.decode() for x in self.run("release_orphans", "", worker_id, *known)]

    def register_tasks(self, limits: Mapping[str, int | str]) -> None:
        """Per task: its max attempts, or ``"<max attempts>:<max lost>"``."""
        if limits:
            with translate_errors(self.url):
                self.client.hset(self.keys.tasks, mapping=dict(limits))

    def workers(self) -> list[tuple[str, int]]:
        with translate_errors(self.url):
            rows = self.client.zrange(self.keys.workers, 0, -1, withscores=True)
        return [(w.decode(), int(s)) for w, s in rows]

    def worker_details(self, worker_ids: Sequence[str]) -> list[tuple[dict[bytes, bytes], list[bytes]]]:
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for wid in worker_ids:
                pipe.hgetall(self.keys.worker(wid))
                pipe.smembers(self.keys.worker_jobs(wid))
            raw = pipe.execute()
        return [(raw[i], sorted(raw[i + 1])) for i in range(0, len(raw), 2)]

    # ------------------------------------------------------------ scheduler

    def promote(self, limit: int = 2000, now_ms: Arg = "") -> tuple[int, int, int]:
        moved, due, now = self.run("promote", now_ms, limit)
        return int(moved), int(due), int(now)

    def wait_schedule_change(self, timeout: float) -> None:
        """Sleep until a job due earlier than the current first one arrives, or timeout."""
        with translate_errors(self.url):
            self.client.execute_command("BLPOP", self.keys.schedule_wake, max(timeout, 0.001))

    def cron_last(self, name: str) -> int | None:
        with translate_errors(self.url):
            raw = self.client.hget(self.keys.cron, name)
        return int(raw) if raw is not None else None

    def cron_init(self, name: str, tick_ms: int) -> int:
        with translate_errors(self.url):
            self.client.hsetnx(self.keys.cron, name, tick_ms)
            return int(self.client.hget(self.keys.cron, name))

    def fire_periodic(self, name: str, tick_ms: int, job: Sequence[Arg], *, enqueue: bool = True,
                      now_ms: Arg = "") -> bool:
        fired, _ = self.run("fire_periodic", now_ms, name, tick_ms, *job, "1" if enqueue else "0")
        return bool(fired)

    def trim_finished(self, failed_ttl_ms: int, done_ttl_ms: int, limit: int = 1000) -> int:
        return int(self.run("trim_finished", "", failed_ttl_ms, done_ttl_ms, limit))

    # ------------------------------------------------------------ job control

    def control(self, name: str, job_id: str, *args: Arg, operation: str = "") -> str:
        """Run a job-control script returning {code, state}; raise on a negative code."""
        code, state = self.run(name, "", job_id, *args)
        state = state.decode() if isinstance(state, bytes) else str(state)
        if int(code) < 0:
            raise error_for_code(int(code), job_id, state, operation or name)
        return state

    def watch(self, job_id: str, within: float | None = None) -> tuple[str, bytes]:
        """``within``: a server that has not answered ``within + REPLY_MARGIN``
        s is ``BrokerUnavailable`` (the connection's 30 s otherwise)."""
        timeout = None if within is None else max(within, 0.0) + REPLY_MARGIN
        state, blob = self.run("watch", "", job_id, timeout=timeout)
        return state.decode(), blob

    def wait_outcome(self, job_id: str, timeout: float) -> bytes | None:
        """Block until the job's outcome is pushed (or timeout); never consumes it.
        A server that has not answered ``REPLY_MARGIN`` s after the timeout
        is ``BrokerUnavailable``."""
        key = self.keys.result(job_id)
        with translate_errors(self.url):
            timeout = max(timeout, 0.001)
            return self.wire.call("BLMOVE", key, key, "RIGHT", "LEFT", timeout, timeout=timeout + REPLY_MARGIN)

    def set_progress(self, job_id: str, token: int, blob: bytes) -> bool:
        return bool(self.run("progress", "", job_id, token, blob))

    def purge_queue(self, queue: str, limit: int = 1000) -> int:
        return int(self.run("purge_queue", "", queue, limit))

    # ------------------------------------------------------------ reads

    def job_hash(self, job_id: str) -> dict[str, bytes]:
        with translate_errors(self.url):
            raw = self.client.hgetall(self.keys.job(job_id))
        return {k.decode(): v for k, v in raw.items()}

    def job_task(self, job_id: str) -> str | None:
        """The task name of a job (None if there is no such job)."""
        with translate_errors(self.url):
            raw = self.client.hget(self.keys.job(job_id), "t")
        return raw.decode("utf-8", "replace") if raw is not None else None

    def job_hashes(self, job_ids: Sequence[str]) -> list[dict[str, bytes]]:
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for jid in job_ids:
                pipe.hgetall(self.keys.job(jid))
            return [{k.decode(): v for k, v in raw.items()} for raw in pipe.execute()]

    def queue_names(self) -> list[str]:
        with translate_errors(self.url):
            return sorted(q.decode() for q in self.client.smembers(self.keys.queues))

    def queue_levels(self, queue: str) -> dict[int, int]:
        """Ready depth of a queue per priority level."""
        with translate_errors(self.url):
            levels = [int(p) for p in self.client.zrange(self.keys.priorities(queue), 0, -1)]
            pipe = self.client.pipeline(transaction=False)
            for p in levels:
                pipe.llen(self.keys.ready(queue, p))
            return dict(zip(levels, pipe.execute()))

    def ready_ids(self, queue: str, limit: int) -> list[str]:
        """Ready job ids of a queue in the order they will be taken."""
        out: list[str] = []
        with translate_errors(self.url):
            for p in self.client.zrange(self.keys.priorities(queue), 0, -1):
                key = self.keys.ready(queue, int(p))
                out += [x.decode() for x in reversed(self.client.lrange(key, -(limit - len(out)), -1))]
                if len(out) >= limit:
                    break
        return out[:limit]

    def ready_id_pages(self, queue: str, batch: int) -> Iterator[list[str]]:
        """Every ready job id of a queue, in the order they will be taken, in
        pages of up to ``batch`` (each priority level read on until it ends)."""
        with translate_errors(self.url):
            levels = self.client.zrange(self.keys.priorities(queue), 0, -1)
        for p in levels:
            key = self.keys.ready(queue, int(p))
            offset = 0
            while True:
                with translate_errors(self.url):
                    raw = self.client.lrange(key, -(offset + batch), -(offset + 1))
                if raw:
                    yield [x.decode() for x in reversed(raw)]
                if len(raw) < batch:
                    break
                offset += len(raw)

    def oldest_ready_created_ms(self, queue: str) -> int | None:
        ids = self.ready_ids(queue, 1)
        if not ids:
            return None
        with translate_errors(self.url):
            raw = self.client.hget(self.keys.job(ids[0]), "c")
        return int(raw) if raw else None

    def job_states(self, batch: int = 1000) -> Iterator[tuple[str, str]]:
        """``(id, state)`` of every job of the namespace, in no order (a SCAN)."""
        cut = len(self.keys.job("").encode())
        with translate_errors(self.url):
            keys: list[bytes] = []
            for key in itertools.chain(self.client.scan_iter(match=self.keys.scan_pattern("j:"), count=batch), [None]):
                if key is not None:
                    keys.append(key)
                    if len(keys) < batch:
                        continue
                pipe = self.client.pipeline(transaction=False)
                for k in keys:
                    pipe.hget(k, "s")
                for k, state in zip(keys, pipe.execute()):
                    if state:
                        yield k[cut:].decode(), state.decode()
                keys = []

    def zset_ids(self, key: str, limit: int, newest_first: bool = True, offset: int = 0) -> list[str]:
        with translate_errors(self.url):
            if newest_first:
                raw = self.client.zrevrange(key, offset, offset + limit - 1)
            else:
                raw = self.client.zrange(key, offset, offset + limit - 1)
        return [x.decode() for x in raw]

    def zcard(self, key: str) -> int:
        with translate_errors(self.url):
            return int(self.client.zcard(key))

    def hgetall(self, key: str) -> dict[str, bytes]:
        with translate_errors(self.url):
            return {k.decode(): v for k, v in self.client.hgetall(key).items()}

    def hgetall_many(self, keys: Sequence[str]) -> list[dict[str, bytes]]:
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for key in keys:
                pipe.hgetall(key)
            return [{k.decode(): v for k, v in raw.items()} for raw in pipe.execute()]

    def count_keys(self) -> int:
        n = 0
        with translate_errors(self.url):
            for _ in self.client.scan_iter(match=self.keys.pattern, count=1000):
                n += 1
        return n

    def delete_namespace(self) -> int:
        """Delete every key of the namespace (tests and ``taskq purge --all``)."""
        self._tails = {}  # what they left out is undone now
        n = 0
        with translate_errors(self.url):
            batch = []
            for key in self.client.scan_iter(match=self.keys.pattern, count=1000):
                batch.append(key)
                if len(batch) >= 500:
                    n += self.client.delete(*batch)
                    batch = []
            if batch:
                n += self.client.delete(*batch)
        return n

    def subscribe_events(self) -> Any:
        pubsub = self.client.pubsub(ignore_subscribe_messages=True)
        with translate_errors(self.url):
            pubsub.subscribe(self.keys.events)
        return pubsub

    # ---- reads for stats

    def stats_snapshot(self, minutes: Sequence[int]) -> dict[str, Any]:
        """Counters, index sizes, workers and the given minute buckets, in one round trip."""
        k = self.keys
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            pipe.hgetall(k.stats_counters)
            pipe.smembers(k.queues)
            pipe.zcard(k.schedule)
            pipe.zcard(k.stalled)
            pipe.zcard(k.failed)
            pipe.zrange(k.workers, 0, -1, withscores=True)
            for minute in minutes:
                pipe.hgetall(k.stats_minute(minute))
            raw = pipe.execute()
        tasks, queues = fold_counters(raw[0])
        return {
            "tasks": tasks, "queues": queues, "queue_names": sorted(q.decode() for q in raw[1]),
            "scheduled": int(raw[2]), "stalled": int(raw[3]), "failed": int(raw[4]),
            "workers": [(w.decode(), int(s)) for w, s in raw[5]], "minutes": [fold_minute(h) for h in raw[6:]],
        }

    def task_counters(self) -> dict[str, int]:
        """All-time counters per task: ``{"<task>|<counter>": n}``."""
        with translate_errors(self.url):
            return fold_counters(self.client.hgetall(self.keys.stats_counters))[0]

    def histograms(self, tasks: Sequence[str]) -> list[dict[str, int]]:
        """The run-time histogram of each task: ``le_<ms>``/``le_inf`` counts and ``sum_ms``."""
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for task in tasks:
                pipe.hgetall(self.keys.stats_histogram(task))
            return [{f.decode(): int(v) for f, v in h.items()} for h in pipe.execute()]

    def queue_figures(self, queues: Sequence[str]) -> dict[str, tuple[dict[int, int], int | None]]:
        """Per queue: ready depth per priority level, and the created_ms of the
        oldest job at the head of any level (None when empty). Three round trips."""
        k = self.keys
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for q in queues:
                pipe.zrange(k.priorities(q), 0, -1)
            levels = [[int(p) for p in ps] for ps in pipe.execute()]
            pipe = self.client.pipeline(transaction=False)
            for q, ps in zip(queues, levels):
                for p in ps:
                    pipe.llen(k.ready(q, p))
                    pipe.lindex(k.ready(q, p), -1)  # consumers RPOP: the tail is taken next
            raw = iter(pipe.execute())
            heads: list[tuple[dict[int, int], list[bytes]]] = []
            for ps in levels:
                depth: dict[int, int] = {}
                ids: list[bytes] = []
                for p in ps:
                    n, head = int(next(raw)), next(raw)
                    if n:
                        depth[p] = n
                    if head is not None:
                        ids.append(head)
                heads.append((depth, ids))
            pipe = self.client.pipeline(transaction=False)
            for _, ids in heads:
                for jid in ids:
                    pipe.hget(k.job(jid.decode()), "c")
            created = iter(pipe.execute())
        out: dict[str, tuple[dict[int, int], int | None]] = {}
        for q, (depth, ids) in zip(queues, heads):
            times = [int(c) for c in (next(created) for _ in ids) if c]
            out[q] = (depth, min(times) if times else None)
        return out

    def worker_job_counts(self, worker_ids: Sequence[str]) -> list[int]:
        """How many jobs each worker holds (SCARD of its ``wj`` set)."""
        with translate_errors(self.url):
            pipe = self.client.pipeline(transaction=False)
            for wid in worker_ids:
                pipe.scard(self.keys.worker_jobs(wid))
            return [int(n) for n in pipe.execute()]
