import pytest
import redis

from common.connection import connect
from common.keys import Keys
from common.registry import deregister, heartbeat, live_members
from common.stats import StatsWriter, read_stats
from framecast.redis_server import RedisServer


@pytest.fixture
def password_redis():
    server = RedisServer(password="s3cr3t-pw").start()
    yield server
    server.cleanup()


def test_connect_with_password_and_acl_user(password_redis):
    assert connect(password_redis.url).ping()
    admin = connect(password_redis.url)
    admin.execute_command("ACL", "SETUSER", "cam", "on", ">userpw", "~*", "+@all")
    url = f"redis://cam:userpw@127.0.0.1:{password_redis.port}/0"
    assert connect(url).ping()
    with pytest.raises(redis.exceptions.AuthenticationError):
        connect(f"redis://cam:wrong@127.0.0.1:{password_redis.port}/0", retries=0).ping()


def test_client_survives_a_redis_restart(own_redis):
    client = connect(own_redis.url)
    client.set("k", "1")
    own_redis.restart()
    assert client.ping()  # the retry policy reconnects transparently
    assert client.get("k") is None  # the restarted server has no persistence in tests


def test_keys_share_a_hash_tag_per_camera():
    keys = Keys("fc")
    names = [keys.frames("cam1"), keys.annotated("cam1"), keys.detections("cam1"), keys.stats("cam1")]
    assert all("{cam1}" in n for n in names)
    assert len(set(names)) == len(names)
    with pytest.raises(Exception, match="invalid camera id"):
        keys.frames("a}b")


def test_stats_writer_batches_and_keeps_counts_across_outage(own_redis):
    client = connect(own_redis.url, retries=0)
    keys = Keys("fc")
    writer = StatsWriter(client, keys, "cam1", interval=3600)
    writer.incr("published", 3)
    writer.maybe_flush()
    assert read_stats(client, keys, "cam1") == {}  # not flushed before the interval
    own_redis.kill()
    writer.incr("published", 2)
    assert writer.flush() is False
    own_redis.start()
    assert writer.flush() is True
    assert read_stats(client, keys, "cam1")["published"] == 5


def test_registry_lists_live_members_only(redis_client):
    keys = Keys("fc")
    heartbeat(redis_client, keys, "worker", "h-1", {"cameras": ["a"]}, ttl=30)
    heartbeat(redis_client, keys, "worker", "h-2", {"cameras": ["b"]}, ttl=30)
    members = live_members(redis_client, keys, "worker")
    assert [m["id"] for m in members] == ["h-1", "h-2"]
    assert members[0]["cameras"] == ["a"]
    deregister(redis_client, keys, "worker", "h-1")
    redis_client.delete(keys.worker("h-2"))  # as if its TTL ran out
    assert live_members(redis_client, keys, "worker") == []
