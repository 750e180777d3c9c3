"""Cluster and Sentinel deployments for the scale-out tests (real servers
on free loopback ports; see servers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.scaleout.servers import LocalCluster, SentinelGroup


@pytest.fixture(scope="module")
def cluster3() -> Iterator[LocalCluster]:
    """Three masters, no replicas (shared by a module's tests)."""
    cluster = LocalCluster(masters=3).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def replicated_cluster() -> Iterator[LocalCluster]:
    """Three masters with a replica each, for one test to break."""
    cluster = LocalCluster(masters=3, replicas=1).start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def sentinel_group() -> Iterator[SentinelGroup]:
    """A master, a replica and three sentinels, for one test to break."""
    group = SentinelGroup(replicas=1).start()
    try:
        yield group
    finally:
        group.stop()
