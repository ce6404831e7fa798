"""Fixtures for the Redis topologies beyond one server: a Redis Cluster (3 masters + 3 replicas)
shared by the session, and a Sentinel set-up (primary, replica, 3 Sentinels) per test, because its
tests fail the primary over. Registered by tests/conftest.py as a plugin."""

from __future__ import annotations

import pytest

from testsupport.redis_topologies import ClusterServers, SentinelServers

CLUSTER_PASSWORD = "cluster-pw"
SENTINEL_PASSWORD = "sentinel-pw"
DATA_PASSWORD = "data-pw"


@pytest.fixture(scope="session")
def redis_cluster():
    """A running 3 + 3 Redis Cluster with a password; tests that kill a master bring it back."""
    with ClusterServers(masters=3, replicas=1, password=CLUSTER_PASSWORD) as cluster:
        yield cluster


@pytest.fixture
def cluster_url(redis_cluster) -> str:
    """The `redis+cluster://` URL of the session's cluster, every master emptied before the test."""
    redis_cluster.wait_ok()
    for port in redis_cluster.masters():
        client = redis_cluster.client(port)
        client.flushall()
        client.close()
    return redis_cluster.url


@pytest.fixture
def redis_sentinel():
    """A primary, a replica and 3 Sentinels (quorum 2, down after 1 s) with passwords on both."""
    with SentinelServers(password=DATA_PASSWORD, sentinel_password=SENTINEL_PASSWORD) as servers:
        yield servers
