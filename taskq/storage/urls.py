"""Server URLs: one server, a Cluster or a Sentinel group.

- ``redis://``, ``rediss://``, ``unix://``: one server (redis-py's forms);
- ``redis+cluster://[user:pass@]host:port[,host:port...][?options]`` and
  ``rediss+cluster://``: any nodes of a Redis/Valkey Cluster (the rest are
  discovered);
- ``redis+sentinel://[user:pass@]host:port[,host:port...]/<service>[/db][?options]``
  and ``rediss+sentinel://``: the sentinels watching ``service``; the user
  and password are the master's, the sentinels' own come as the options
  ``sentinel_username`` and ``sentinel_password``.

:func:`parse_server_url` turns a URL into a :class:`ServerAddress`, whose
``url`` is a plain ``redis://`` URL (the first host, with the credentials,
database and options) that redis-py reads into connection settings.
"""

from __future__ import annotations

import urllib.parse
from dataclasses import dataclass, field
from typing import Literal

Kind = Literal["server", "cluster", "sentinel"]
SCHEMES: dict[str, tuple[Kind, bool]] = {
    "redis+cluster": ("cluster", False), "rediss+cluster": ("cluster", True),
    "redis+sentinel": ("sentinel", False), "rediss+sentinel": ("sentinel", True),
}
DEFAULT_PORT: dict[Kind, int] = {"server": 6379, "cluster": 6379, "sentinel": 26379}
# Options of the sentinels themselves (the rest are the master's).
SENTINEL_OPTIONS = {"sentinel_username": str, "sentinel_password": str,
                    "sentinel_socket_timeout": float, "sentinel_socket_connect_timeout": float}


class BadUrl(ValueError):
    """A part of a cluster or sentinel URL is wrong; the message names it
    and never quotes the user info."""


@dataclass(frozen=True)
class ServerAddress:
    """Where the server is: ``kind``, the ``hosts`` to ask first, and a
    plain URL with the connection settings (see the module docstring)."""

    kind: Kind
    url: str
    hosts: tuple[tuple[str, int], ...] = ()
    tls: bool = False
    service: str = ""
    sentinel_options: dict[str, str | float] = field(default_factory=dict)


def split_hosts(netloc: str, kind: Kind) -> tuple[str, list[tuple[str, int]]]:
    """(user info with its '@' or '', [(host, port)]) of ``netloc``."""
    userinfo, _, hostlist = netloc.rpartition("@")
    hosts: list[tuple[str, int]] = []
    for part in hostlist.split(","):
        if not part:
            raise BadUrl(f"an empty host in the host list {hostlist!r}")
        if part.startswith("["):  # [::1]:6379
            host, _, rest = part[1:].partition("]")
            port_text = rest[1:] if rest.startswith(":") else rest
        else:
            host, _, port_text = part.rpartition(":") if ":" in part else (part, "", "")
        if not host:
            raise BadUrl(f"the host {part!r} has no name")
        if port_text and not port_text.isdigit() or port_text and not 0 < int(port_text) < 65536:
            raise BadUrl(f"the port of host {part!r} is not a number from 1 to 65535")
        hosts.append((host, int(port_text) if port_text else DEFAULT_PORT[kind]))
    return (userinfo + "@" if userinfo else ""), hosts


def parse_server_url(url: str) -> ServerAddress:
    """The :class:`ServerAddress` of ``url``; :class:`BadUrl` naming the part
    that is wrong (never quoting the password)."""
    scheme, sep, rest = url.partition("://")
    kind_tls = SCHEMES.get(scheme.lower())
    if not sep or kind_tls is None:
        return ServerAddress("server", url)
    kind, tls = kind_tls
    rest = rest.split("#", 1)[0]
    at = rest.split("?", 1)[0].rfind("@")  # the user info ends at the last '@' before the options
    userpart, rest = rest[: at + 1], rest[at + 1 :]
    hostpart, query = rest.split("?", 1) if "?" in rest else (rest, "")
    netloc, slash, path = hostpart.partition("/")
    path = slash + path
    netloc = userpart + netloc
    userinfo, hosts = split_hosts(netloc, kind)
    options = urllib.parse.parse_qs(query, keep_blank_values=True)
    sentinel_options: dict[str, str | float] = {}
    for name in [n for n in options if n.startswith("sentinel_")]:
        if kind != "sentinel" or name not in SENTINEL_OPTIONS:
            known = ", ".join(SENTINEL_OPTIONS) if kind == "sentinel" else "none: not a sentinel URL"
            raise BadUrl(f"unknown option {name!r} (sentinel options: {known})")
        try:
            sentinel_options[name.removeprefix("sentinel_")] = SENTINEL_OPTIONS[name](options.pop(name)[-1])
        except ValueError:
            raise BadUrl(f"option {name!r} must be a number") from None
    segments = [urllib.parse.unquote(s) for s in path.split("/")[1:] if s != ""]
    service, db = "", "0"
    if kind == "cluster":
        if segments not in ([], ["0"]):
            raise BadUrl(f"a cluster has only database 0, not the path {path!r}")
    else:
        if not segments:
            raise BadUrl("the sentinel URL names no service: write redis+sentinel://host:port/<service_name>[/db]")
        if len(segments) > 2:
            raise BadUrl(f"the path {path!r} has more than /<service_name>/<db>")
        service = segments[0]
        if len(segments) == 2:
            db = segments[1]
            if not db.isdigit():
                raise BadUrl(f"the database {db!r} (after the service name) must be a number")
    rest_query = urllib.parse.urlencode([(k, v) for k, vs in options.items() for v in vs])
    host, port = hosts[0]
    shown_host = f"[{host}]" if ":" in host else host
    plain = f"{'rediss' if tls else 'redis'}://{userinfo}{shown_host}:{port}/{db}" + (f"?{rest_query}" if rest_query else "")
    return ServerAddress(kind, plain, tuple(hosts), tls, service, sentinel_options)

