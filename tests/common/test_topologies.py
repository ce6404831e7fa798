"""framecast against a Redis Cluster (3 + 3) and a Sentinel-managed primary, with real processes:
connecting by URL, publishing, registries and stats, and waiting out a master or primary failure."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import redis

from common import envelope
from common.config import load_config
from common.connection import CONNECTION_ERRORS, connect, is_cluster, is_writable_primary
from common.keys import FRAME_FIELD, Keys
from common.registry import deregister, heartbeat, live_members
from common.stats import StatsWriter, read_stats
from producer.publisher import CameraPublisher
from tests.topologies import CLUSTER_PASSWORD, DATA_PASSWORD
from testsupport.redis_topologies import HOST, wait_until

KEYS = Keys("fc")
IMAGE = np.zeros((48, 64, 3), np.uint8)


def cameras_on_distinct_masters(cluster, count: int = 3) -> list[str]:
    """Camera ids whose keys (hash tag `{cam}`) live on `count` different masters."""
    by_master: dict[int, str] = {}
    for index in range(200):
        cam = f"cam{index}"
        by_master.setdefault(cluster.master_for_key(KEYS.frames(cam)), cam)
        if len(by_master) == count:
            return sorted(by_master.values())
    raise AssertionError("no camera ids spread over the masters")


def publishers(write_config, url: str, cams: list[str]) -> dict[str, CameraPublisher]:
    settings = load_config(write_config([{"id": cam, "source": "pattern"} for cam in cams], redis_url=url), env={})
    client = connect(settings.redis_url)
    return {cam.id: CameraPublisher(cam, settings, client, threading.Event()) for cam in settings.cameras}


def seqs_in(client, cam: str) -> list[int]:
    return [envelope.decode(fields[FRAME_FIELD]).seq for _, fields in client.xrange(KEYS.frames(cam))]


# ---- Redis Cluster ----------------------------------------------------------------------------------

def test_cluster_url_gives_a_cluster_client_and_hides_the_password(cluster_url, write_config):
    settings = load_config(write_config([], redis_url=cluster_url), env={})
    assert CLUSTER_PASSWORD not in settings.redis_url_display
    assert settings.redis_url_display.startswith("redis+cluster://***@127.0.0.1:")
    client = connect(settings.redis_url)
    assert is_cluster(client)
    assert is_writable_primary(client)
    client.close()


def test_producer_publishes_cameras_on_three_masters(redis_cluster, cluster_url, write_config):
    cams = cameras_on_distinct_masters(redis_cluster)
    pubs = publishers(write_config, cluster_url, cams)
    for _ in range(20):
        for pub in pubs.values():
            assert pub.publish(IMAGE, time.time_ns())
            assert pub.sender.flush()  # one frame per pipeline: a full live queue would drop the oldest
    for pub in pubs.values():
        assert pub.account.stats.flush()
        pub.sender.close()
    client = connect(cluster_url)
    for cam in cams:
        assert seqs_in(client, cam) == list(range(20))
        assert read_stats(client, KEYS, cam)["published"] == 20
        # the stream really is on its own master: that node answers for it without a redirect
        node = redis_cluster.client(redis_cluster.master_for_key(KEYS.frames(cam)))
        assert node.xlen(KEYS.frames(cam)) == 20
        node.close()
    assert len({redis_cluster.master_for_key(KEYS.frames(cam)) for cam in cams}) == 3


def test_registry_and_stats_on_a_cluster(cluster_url):
    client = connect(cluster_url)
    heartbeat(client, KEYS, "worker", "w-1", {"cameras": ["a"]}, ttl=30)
    heartbeat(client, KEYS, "worker", "w-2", {"cameras": ["b"]}, ttl=30)
    heartbeat(client, KEYS, "producer", "p-1", {"cameras": ["a", "b"]}, ttl=30)
    workers = live_members(client, KEYS, "worker")
    assert [w["id"] for w in workers] == ["w-1", "w-2"]
    assert workers[0]["cameras"] == ["a"] and workers[0]["ip"] == HOST
    assert [p["id"] for p in live_members(client, KEYS, "producer")] == ["p-1"]
    deregister(client, KEYS, "worker", "w-1")
    assert [w["id"] for w in live_members(client, KEYS, "worker")] == ["w-2"]
    writer = StatsWriter(client, KEYS, "a", interval=3600)
    writer.incr("processed", 7)
    writer.gauge("latency_ms", 12.5)
    assert writer.flush()
    assert read_stats(client, KEYS, "a") == {"processed": 7.0, "latency_ms": 12.5}


def test_a_replica_node_is_not_a_writable_primary(redis_cluster, cluster_url):
    replica = redis_cluster.client(redis_cluster.replicas_of(redis_cluster.masters()[0])[0])
    assert not is_writable_primary(replica)
    replica.close()


def test_writes_resume_after_a_master_is_killed(redis_cluster, cluster_url, write_config):
    """Kill the master of one camera's slot: its replica takes over and every loop's writes resume;
    meanwhile only CONNECTION_ERRORS reach the callers. The killed node comes back as a replica."""
    cams = cameras_on_distinct_masters(redis_cluster)
    pubs = publishers(write_config, cluster_url, cams)
    client = next(iter(pubs.values())).client
    victim_cam = cams[0]
    victim = redis_cluster.master_for_key(KEYS.frames(victim_cam))
    for pub in pubs.values():
        assert pub.publish(IMAGE, time.time_ns()) and pub.sender.flush()
    before = {cam: pub.published for cam, pub in pubs.items()}
    redis_cluster.kill(victim)
    killed_at = time.monotonic()
    assert not is_writable_primary(client)  # a primary is unreachable
    deadline = killed_at + 40
    while min(pub.published - before[cam] for cam, pub in pubs.items()) < 5:
        assert time.monotonic() < deadline, "writes did not resume within 40 s"
        for pub in pubs.values():
            pub.publish(IMAGE, time.time_ns())
        try:  # the registry and stats calls of the service loops: only CONNECTION_ERRORS may surface
            heartbeat(client, KEYS, "producer", "p-1", {"cameras": cams}, ttl=30)
            read_stats(client, KEYS, victim_cam)
        except CONNECTION_ERRORS:
            pass
        time.sleep(0.02)
    print(f"cluster: writes to every camera resumed {time.monotonic() - killed_at:.1f} s after the master was killed")
    assert wait_until(lambda: is_writable_primary(client), 40, "a writable cluster")
    assert victim not in redis_cluster.masters()
    for cam, pub in pubs.items():
        # a sender whose last batch failed drops frames until its backoff ends: the newest frame
        # offered after that is in the stream
        wait_until(lambda pub=pub, cam=cam: pub.publish(IMAGE, time.time_ns()) and pub.sender.flush()
                   and seqs_in(client, cam)[-1] == pub.seq - 1, 30, f"{cam}'s newest frame", interval=0.2)
        seqs = seqs_in(client, cam)
        assert seqs == sorted(set(seqs))  # order kept; what the dead master had not replicated is gone
        pub.sender.close()
    assert [p["id"] for p in live_members(client, KEYS, "producer")] == ["p-1"]
    redis_cluster.start_node(victim)
    redis_cluster.wait_ok()
    old = redis_cluster.client(victim)
    assert not is_writable_primary(old)  # it rejoined as a replica
    old.close()


# ---- Sentinel ----------------------------------------------------------------------------------------

def test_sentinel_client_follows_a_failover(redis_sentinel, write_config):
    settings = load_config(write_config([], redis_url=redis_sentinel.url), env={})
    assert DATA_PASSWORD not in settings.redis_url_display
    assert "sentinel_password=***" in settings.redis_url_display
    client = connect(settings.redis_url, retries=1)
    assert not is_cluster(client) and is_writable_primary(client)
    stream = "fc:failover:{t}"
    for i in range(50):
        client.xadd(stream, {"i": i})
    old_port = redis_sentinel.kill_primary()
    killed_at = time.monotonic()
    written_after = []
    i = 50
    while len(written_after) < 20:
        assert time.monotonic() - killed_at < 30, "the client did not follow the failover within 30 s"
        try:
            written_after.append(client.xadd(stream, {"i": i}))
            i += 1
        except CONNECTION_ERRORS:
            time.sleep(0.05)
    print(f"sentinel: writes resumed {time.monotonic() - killed_at:.1f} s after the primary was killed")
    new_port = redis_sentinel.primary_port()
    assert new_port != old_port
    new_primary = redis.Redis(HOST, new_port, password=DATA_PASSWORD)
    ids = [entry_id for entry_id, _ in new_primary.xrange(stream)]
    assert ids[-20:] == written_after  # the writes went to the promoted replica, in order

    # The old primary comes back as a primary; Sentinel demotes it. The client never writes to it.
    redis_sentinel.restart(old_port)
    old_primary = redis.Redis(HOST, old_port, password=DATA_PASSWORD)
    demoted_after = []

    def demoted() -> bool:
        demoted_after.append(client.xadd(stream, {"i": "during"}))
        return not is_writable_primary(old_primary)

    wait_until(demoted, 40, "Sentinel to turn the old primary into a replica", interval=0.2)
    assert [entry_id for entry_id, _ in new_primary.xrange(stream)][-len(demoted_after):] == demoted_after
    assert is_writable_primary(client)
    for c in (client, new_primary, old_primary):
        c.close()


def test_sentinel_url_with_wrong_service_waits_as_an_outage(redis_sentinel):
    url = redis_sentinel.url.replace("/framecast?", "/nosuchservice?")
    with pytest.raises(CONNECTION_ERRORS):  # MasterNotFoundError: loops back off and retry
        connect(url, retries=0).ping()
