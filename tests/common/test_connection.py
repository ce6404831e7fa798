import os
import socket
import time

import pytest
import redis
import redis.sentinel

from common import connection
from common.config import Settings, load_config
from common.connection import CONNECTION_ERRORS, connect, describe_error, is_writable_primary
from common.errors import ConfigError
from common.keys import Keys
from common.redis_url import parse_redis_url
from common.registry import deregister, heartbeat, live_members, member_id
from common.stats import StatsWriter, read_stats
from testsupport.redis_server import RedisServer, free_port


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


# ---- URL forms and identity ----------------------------------------------------------------------------

@pytest.mark.parametrize("url, message", [
    ("http://h:1", "must start with redis://"),
    ("redis+cluster://:pw@h:1,h:2/3", "only database 0"),
    ("redis+cluster://:pw@h:1?password=pw", r"unknown redis\+cluster:// option .password."),
    ("redis+cluster://:pw@h:1,h:port", "not a number"),
    ("redis+sentinel://:pw@h:1,h:2", "name the Sentinel service"),
    ("redis+sentinel://:pw@h:1/svc?ssl_ca_certs=x", r"unknown redis\+sentinel:// option"),
])
def test_bad_redis_urls_are_refused_without_echoing_them(write_config, url, message):
    with pytest.raises(ConfigError, match=message) as info:
        load_config(write_config([], redis_url=url), env={})
    assert "pw" not in str(info.value)


def test_topology_urls_parse_to_their_parts():
    cluster = parse_redis_url("rediss+cluster://user:p%40ss@10.0.0.1:7000,[::1]:7001?ssl_ca_certs=/ca.pem")
    assert (cluster.topology, cluster.tls, cluster.hosts) == ("cluster", True, (("10.0.0.1", 7000), ("::1", 7001)))
    assert (cluster.username, cluster.password, cluster.tls_options) == ("user", "p@ss", {"ssl_ca_certs": "/ca.pem"})
    assert "p@ss" not in repr(cluster)
    sentinel = parse_redis_url("redis+sentinel://:pw@s1,s2:26380/mymaster?sentinel_password=spw&db=2")
    assert sentinel.hosts == (("s1", 26379), ("s2", 26380))
    assert (sentinel.service, sentinel.db, sentinel.password, sentinel.sentinel_password) == ("mymaster", 2, "pw", "spw")
    display = Settings(redis_url="redis+sentinel://:pw@s1,s2:26380/mymaster?sentinel_password=spw").redis_url_display
    assert display == "redis+sentinel://***@s1,s2:26380/mymaster?sentinel_password=***"


def test_tls_sentinel_url_uses_tls_connections():
    client = connect("rediss+sentinel://:pw@127.0.0.1:1/mymaster?ssl_cert_reqs=none")  # lazy: nothing is dialled
    assert client.connection_pool.connection_class is redis.sentinel.SentinelManagedSSLConnection
    assert client.connection_pool.connection_kwargs["ssl_cert_reqs"] == "none"


def test_member_ids_are_unique_per_call_and_configurable(monkeypatch):
    first, second = member_id(), member_id()
    assert first != second
    prefix = f"{socket.gethostname()}-{os.getpid()}-"
    assert first.startswith(prefix) and second.startswith(prefix)
    monkeypatch.setenv("FRAMECAST_INSTANCE_ID", "edge-7.worker-a")
    assert member_id() == member_id() == "edge-7.worker-a"
    monkeypatch.setenv("FRAMECAST_INSTANCE_ID", "bad id {x}")
    with pytest.raises(ConfigError, match="FRAMECAST_INSTANCE_ID"):
        member_id()


def test_heartbeat_carries_the_ip_and_prunes_long_dead_members(redis_client, redis_url):
    keys = Keys("fc")
    client = connect(redis_url)
    redis_client.zadd(keys.workers, {"gone-long-ago": time.time() - 100_000})
    heartbeat(client, keys, "worker", "w-1", {"cameras": ["a"]}, ttl=10)
    assert [m.decode() for m in redis_client.zrange(keys.workers, 0, -1)] == ["w-1"]
    assert live_members(client, keys, "worker")[0]["ip"] == "127.0.0.1"


@pytest.fixture
def primary_and_replica():
    primary = RedisServer().start()
    replica = RedisServer(replicaof=("127.0.0.1", primary.port)).start().wait_synced()
    yield primary, replica
    replica.cleanup()
    primary.cleanup()


def test_registry_reads_work_on_a_read_only_replica(primary_and_replica):
    primary, replica = primary_and_replica
    keys = Keys("fc")
    writer, reader = connect(primary.url), connect(replica.url)
    heartbeat(writer, keys, "worker", "w-1", {"cameras": ["a"]}, ttl=30)
    heartbeat(writer, keys, "worker", "w-2", {"cameras": ["b"]}, ttl=30)
    writer.delete(keys.worker("w-2"))  # expired: a reader that pruned would have to write
    assert writer.execute_command("WAIT", 1, 5000) == 1
    with pytest.raises(redis.exceptions.ReadOnlyError):
        reader.set("x", 1)
    assert [m["id"] for m in live_members(reader, keys, "worker")] == ["w-1"]
    assert is_writable_primary(writer) and not is_writable_primary(reader)


def test_web_reads_work_on_a_replica_and_readyz_says_it_is_not_writable(primary_and_replica, write_config):
    primary, replica = primary_and_replica
    from web.app import create_app  # the web tier is a client of common here, not a service under test

    keys = Keys("fc")
    heartbeat(connect(primary.url), keys, "worker", "w-1", {"cameras": ["cam1"]}, ttl=30)
    assert connect(primary.url).execute_command("WAIT", 1, 5000) == 1
    settings = load_config(write_config([{"id": "cam1", "source": "pattern"}], redis_url=replica.url), env={})
    app = create_app(settings, connect(replica.url))
    client = app.test_client()
    assert [w["id"] for w in client.get("/api/workers").get_json()["workers"]] == ["w-1"]
    assert client.get("/api/cameras").status_code == 200
    response = client.get("/readyz")
    assert response.status_code == 503
    assert "not a writable primary" in response.get_json()["message"]


def test_topology_errors_are_outages_and_name_no_password(monkeypatch):
    port = free_port()  # nothing listens there
    with pytest.raises(CONNECTION_ERRORS) as sentinel_error:
        connect(f"redis+sentinel://u:data-pw@127.0.0.1:{port}/svc?sentinel_password=sent-pw", retries=0).ping()
    monkeypatch.setattr(connection, "CLUSTER_STARTUP_WAIT", 0.5)
    with pytest.raises(CONNECTION_ERRORS) as cluster_error:
        connect(f"redis+cluster://u:data-pw@127.0.0.1:{port}", retries=0)
    for error in (sentinel_error.value, cluster_error.value):
        assert "-pw" not in describe_error(error)
