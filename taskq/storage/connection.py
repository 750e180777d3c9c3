"""Connections to the server, the script runner and error translation.

Every transition is a Lua function (``lua/*.lua``, loaded once as a library
and called with ``FCALL``, or as scripts with ``EVALSHA`` where functions are
not allowed). Errors from redis-py are turned into taskq's here, once.
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import NoScriptError, ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from ..errors import BrokerRefused, BrokerUnavailable, ConfigurationError, ServerLoading
from .keys import Keys
from .scripts import load_library
from .topology import Topology, make_client
from .urls import BadUrl, parse_server_url
from .wire import Wire

log = logging.getLogger("taskq")

Arg = str | bytes | int | float
TRANSIENT = (RedisConnectionError, RedisTimeoutError, ConnectionError, OSError)
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
    scheme other than redis://, rediss://, unix:// and the cluster and
    sentinel forms of :mod:`.urls`, a bad port or host, a database that is
    not a number, an unknown or bad query parameter), naming the URL without
    its secrets. Nothing is connected."""
    try:
        plain = parse_server_url(url).url  # the connection settings of a cluster or sentinel URL
        client = redis.Redis.from_url(plain)
        pool = client.connection_pool
        path = urllib.parse.unquote(urllib.parse.urlsplit(plain).path).replace("/", "")
        if path and "db" not in pool.connection_kwargs and "path" not in pool.connection_kwargs:
            raise ValueError("the database (the URL's path) must be a number")  # redis-py ignores it
        pool.connection_class(**pool.connection_kwargs)  # unknown or bad query parameters
    except BadUrl as exc:
        raise ConfigurationError(f"redis_url {redact_url(url)} is not a usable server URL: {exc}") from None
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


def library_answer(exc: ResponseError) -> bool | None:
    """What a refused ``FUNCTION LOAD`` tells: True if the library is there
    already, False if the server cannot have it (Redis < 7, FUNCTION denied
    by an ACL: scripts are used instead), None if undecided (raise it)."""
    text = str(exc).lower()
    if "already exists" in text:
        return True
    if isinstance(exc, redis.exceptions.NoPermissionError) or "unknown command" in text or "noperm" in text:
        return False
    return None


class Connection:
    """The connections of one namespace and the calls every part of storage makes."""

    def __init__(self, url: str, namespace: str, *, retry_timeout: float = 5.0,
                 durable_replicas: int | None = None, durable_timeout: float = 2.0) -> None:
        self.url = url
        self.durable_replicas = durable_replicas  # None: decided on the first durable enqueue
        self.durable_timeout = durable_timeout
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
        # Any: redis-py annotates replies as bytes | str | ... whatever the
        # connection decodes; ours never decodes (bytes), and storage turns
        # every reply into typed values itself.
        self.client: Any
        self.topology: Topology
        self.client, self.topology = make_client(
            url, self.prefix, socket_connect_timeout=2.0, socket_timeout=30.0, protocol=2, health_check_interval=0)
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
            loaded = library_answer(exc)
            if loaded is None:
                raise  # out of memory, read-only...: undecided, reported as such
            self.functions = loaded
            return loaded
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

    def replicas_to_wait_for(self) -> int:
        """``durable_replicas``, or when unset 1 if the master has a replica
        (known to Sentinel or the slot map, or connected to a lone server)."""
        if self.durable_replicas is None:
            known = self.topology.replicas()
            if known < 0:
                try:
                    known = int(self.info("replication").get("connected_slaves", 0))
                except BrokerRefused:  # INFO denied by an ACL: set durable_replicas to wait for replicas
                    known = 0
            self.durable_replicas = min(known, 1)
        return self.durable_replicas

    def ping(self) -> bool:
        with translate_errors(self.url):
            return bool(self.client.ping())

    def server_time_ms(self) -> int:
        with translate_errors(self.url):
            sec, usec = self.client.time()
        return int(sec) * 1000 + int(usec) // 1000

    def info(self, section: str | None = None) -> dict[str, Any]:
        with translate_errors(self.url):
            return dict(self.client.info(section) if section else self.client.info())

    def config_get(self, name: str) -> str | None:
        with translate_errors(self.url):
            try:
                value = self.client.config_get(name)
            except ResponseError:
                return None  # CONFIG may be disabled or renamed on managed servers
        raw = value.get(name)
        return raw.decode() if isinstance(raw, bytes) else raw
