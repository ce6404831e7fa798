"""Shared fixtures: a real redis-server per session (flushed before each test), config files."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import redis
import yaml

from common.keys import Keys
from testsupport.redis_server import RedisServer

REPO = Path(__file__).resolve().parent.parent
pytest_plugins = ["tests.topologies"]  # Redis Cluster and Sentinel fixtures


@pytest.fixture(scope="session")
def redis_server():
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def redis_url(redis_server) -> str:
    """URL of the session's redis-server, emptied before the test."""
    client = redis.Redis.from_url(redis_server.url)
    client.flushall()
    client.close()
    return redis_server.url


@pytest.fixture
def redis_client(redis_url):
    client = redis.Redis.from_url(redis_url)
    yield client
    client.close()


@pytest.fixture
def own_redis():
    """A redis-server of this test's own, for tests that kill or restart it."""
    server = RedisServer().start()
    yield server
    server.cleanup()


@pytest.fixture
def keys() -> Keys:
    return Keys("fc")


@pytest.fixture
def write_config(tmp_path):
    """write_config(cameras=[...], **settings) -> path of a YAML config file in tmp_path."""

    def _write(cameras: list[dict], name: str = "cameras.yaml", **settings) -> Path:
        path = tmp_path / name
        path.write_text(yaml.safe_dump({**settings, "cameras": cameras}, sort_keys=False))
        return path

    return _write


@pytest.fixture(autouse=True)
def _isolated_env(monkeypatch):
    """Tests never see the developer's own framecast environment variables."""
    for var in list(os.environ):
        if var.startswith("FRAMECAST_") and var != "FRAMECAST_CACHE_DIR" or var == "REDIS_URL":
            monkeypatch.delenv(var, raising=False)
