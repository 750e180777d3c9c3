"""A fail-fast client for administering a server process (probe, wait until
ready, INFO, SHUTDOWN, CLUSTER commands): what the embedded server manager
and the ephemeral cluster need, with the redis-py errors they meet turned
into :class:`AdminError`."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from types import TracebackType
from typing import Any

import redis
from redis.backoff import NoBackoff
from redis.crc import key_slot as _key_slot
from redis.retry import Retry

log = logging.getLogger("taskq.server")
POLL_INTERVAL = 0.02


def key_slot(key: str) -> int:
    """The Cluster hash slot of ``key`` (its ``{tag}`` if it has one)."""
    return int(_key_slot(key.encode()))


class AdminError(Exception):
    """The server did not answer an admin command as asked; ``str()`` is
    ``"<redis-py exception class>: <its message>"``."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__(f"{type(exc).__name__}: {exc}")
        self.timed_out = isinstance(exc, redis.TimeoutError)


class AdminClient:
    """One server, reached by ``unix_socket_path=`` or ``host=``/``port=``;
    no retries, short timeouts."""

    def __init__(self, timeout: float = 2.0, **where: Any) -> None:
        self.where = where.get("unix_socket_path") or f"{where.get('host')}:{where.get('port')}"
        self._client = redis.Redis(socket_timeout=timeout, socket_connect_timeout=timeout,
                                   retry=Retry(NoBackoff(), 0), **where)

    def __enter__(self) -> AdminClient:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._client.close()

    def probe(self) -> bool | None:
        """True: answers PING; False: alive but not ready (loading, slow); None: unreachable."""
        try:
            return bool(self._client.ping())
        except (redis.BusyLoadingError, redis.TimeoutError):
            return False
        except (redis.ConnectionError, OSError):
            return None
        except redis.RedisError:
            return False

    def wait_ready(self, timeout: float, alive: Callable[[], bool] | None = None, *,
                   loading_ok: bool = False, stop: Callable[[], bool] | None = None) -> bool:
        """Wait until the server answers PING. ``timeout`` bounds the wait for a
        server that does not answer at all; one that answers ``LOADING`` (reading
        a large data set at start) is waited for as long as it loads, or, with
        ``loading_ok``, counts as answering. False once ``stop()`` is true."""
        deadline = time.monotonic() + timeout
        told = False
        while True:
            try:
                if self._client.ping():
                    return True
            except redis.BusyLoadingError:
                if loading_ok:
                    return True
                if not told:
                    log.warning("the server at %s is loading its data set; waiting for it", self.where)
                    told = True
                deadline = time.monotonic() + timeout  # alive, and loading ends by itself
            except (redis.RedisError, OSError):
                pass
            if time.monotonic() > deadline or (alive is not None and not alive()) or (stop is not None and stop()):
                return False
            time.sleep(POLL_INTERVAL)

    def info(self, section: str | None = None) -> dict[str, Any]:
        """INFO (answered while the server loads, unlike PING)."""
        try:
            return dict(self._client.info(section) if section else self._client.info())
        except redis.RedisError as exc:  # hung, or busy with a script
            raise AdminError(exc) from None

    def command(self, *args: str | int) -> Any:
        """Any command, e.g. ``command("CLUSTER", "MYID")`` (a CLUSTER reply comes unparsed, as bytes)."""
        try:
            client: Any = self._client  # redis-py's execute_command is untyped
            return client.execute_command(*args)
        except redis.RedisError as exc:
            raise AdminError(exc) from None

    def pid(self) -> int:
        return int(self.info("server")["process_id"])

    def shutdown(self) -> None:
        """SHUTDOWN; a reply that does not come in time is no error (it is
        shutting down)."""
        try:
            self._client.shutdown()
        except redis.TimeoutError:
            pass
        except redis.RedisError as exc:
            raise AdminError(exc) from None
