"""Cluster and Sentinel URLs: what they mean, and a clear error naming the
part that is wrong, with the password hidden."""

from __future__ import annotations

import pytest

from taskq import ConfigurationError, TaskQ
from taskq.storage.urls import parse_server_url


def test_cluster_url_lists_the_nodes_to_ask_first():
    address = parse_server_url("redis+cluster://u:pw@10.0.0.1:7000,10.0.0.2:7001,[::1]:7002?socket_timeout=3")
    assert address.kind == "cluster" and not address.tls
    assert address.hosts == (("10.0.0.1", 7000), ("10.0.0.2", 7001), ("::1", 7002))
    assert address.url == "redis://u:pw@10.0.0.1:7000/0?socket_timeout=3"


def test_tls_cluster_url_connects_with_tls_and_defaults_the_port():
    address = parse_server_url("rediss+cluster://node-a,node-b")
    assert address.tls and address.hosts == (("node-a", 6379), ("node-b", 6379))
    assert address.url.startswith("rediss://node-a:6379/0")


def test_sentinel_url_names_service_database_and_sentinel_credentials():
    address = parse_server_url(
        "redis+sentinel://app:secret@s1:26379,s2/orders/2?sentinel_password=sp&sentinel_username=watch")
    assert address.kind == "sentinel" and address.service == "orders"
    assert address.hosts == (("s1", 26379), ("s2", 26379))
    assert address.sentinel_options == {"password": "sp", "username": "watch"}
    assert address.url == "redis://app:secret@s1:26379/2"  # the master's credentials and database


def test_plain_urls_are_left_to_redis_py():
    assert parse_server_url("redis://h:1/3").kind == "server"
    assert parse_server_url("unix:///run/valkey.sock").kind == "server"


@pytest.mark.parametrize(("url", "names"), [
    ("redis+cluster://u:hunter2@h1:70x0", "the port of host 'h1:70x0'"),
    ("redis+cluster://u:hunter2@h1,,h2", "an empty host"),
    ("redis+cluster://u:hunter2@h1/5", "a cluster has only database 0"),
    ("redis+sentinel://u:hunter2@s1:26379", "names no service"),
    ("redis+sentinel://u:hunter2@s1/orders/x", "the database 'x'"),
    ("redis+sentinel://u:hunter2@s1/orders/1/2", "more than /<service_name>/<db>"),
    ("redis+sentinel://u:hunter2@s1/orders?sentinel_pass=1", "unknown option 'sentinel_pass'"),
    ("redis+cluster://u:hunter2@h1?sentinel_password=1", "not a sentinel URL"),
    ("redis+sentinel://s1/orders?sentinel_socket_timeout=soon", "'sentinel_socket_timeout' must be a number"),
])
def test_bad_cluster_or_sentinel_url_is_refused_naming_the_part(url, names):
    with pytest.raises(ConfigurationError) as err:
        TaskQ("shop", url)
    message = str(err.value)
    assert names in message
    assert "hunter2" not in message and ("***" in message or "@" not in url)


def test_sentinel_password_in_the_options_is_hidden():
    with pytest.raises(ConfigurationError) as err:
        TaskQ("shop", "redis+sentinel://s1/orders?sentinel_password=hunter2&socket_timeout=soon")
    assert "hunter2" not in str(err.value) and "sentinel_password=***" in str(err.value)


def test_good_cluster_and_sentinel_urls_connect_nothing_until_used():
    for url in ("redis+cluster://127.0.0.1:1,127.0.0.1:2", "redis+sentinel://127.0.0.1:1/orders/0"):
        app = TaskQ("shop", url)
        assert app.settings.redis_url == url
        app.close()
