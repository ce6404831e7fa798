"""One worker serves cameras whose keys live on different masters of a Redis Cluster (reads per hash
slot), and rides out a master's death: its replica takes over and every camera flows again."""

import time

import redis

from common.config import load_config
from common.connection import connect
from tests.worker.conftest import make_frame
from tests.worker.live.test_consumer import KEYS, InProcessWorker, publish, wait_until

FLOW_AGAIN_BOUND_S = 30.0  # a killed master: every camera's frames annotated again within this


def cameras_on_distinct_masters(cluster, count: int) -> dict[str, int]:
    """Camera ids whose keys hash to `count` different masters: {cam: master port}."""
    chosen: dict[int, str] = {}
    for i in range(1000):
        cam = f"cam{i}"
        chosen.setdefault(cluster.master_for_key(KEYS.frames(cam)), cam)
        if len(chosen) == count:
            return {cam: port for port, cam in chosen.items()}
    raise AssertionError(f"no {count} cameras on distinct masters: {chosen}")


def annotated_count(client, cam: str) -> int:
    try:
        return client.xlen(KEYS.annotated(cam))
    except (redis.exceptions.RedisError, OSError):
        return -1


def test_one_worker_serves_cameras_on_three_masters_through_a_failover(write_config, redis_cluster, cluster_url,
                                                                        sample_images):
    placed = cameras_on_distinct_masters(redis_cluster, 3)
    cams = list(placed)
    config = [{"id": cam, "source": "pattern", "mode": "backlog"} for cam in cams]
    settings = load_config(write_config(config, redis_url=cluster_url, worker={"claim_idle_ms": 1000}), env={})
    client = connect(cluster_url)
    failing = cams[0]
    killed = placed[failing]
    seq = iter(range(10_000))
    try:
        in_thread = InProcessWorker(settings, connect(cluster_url))
        with in_thread:
            for cam in cams:
                publish(client, [make_frame(sample_images[0], cam=cam, seq=next(seq))])
            assert wait_until(lambda: all(annotated_count(client, cam) == 1 for cam in cams), 60)

            killed_at = time.monotonic()
            redis_cluster.kill(killed)  # SIGKILL: its replica takes over after cluster-node-timeout
            flowing: dict[str, float] = {}
            while len(flowing) < len(cams) and time.monotonic() - killed_at < FLOW_AGAIN_BOUND_S:
                for cam in cams:
                    if cam in flowing:
                        continue
                    before = annotated_count(client, cam)
                    try:
                        publish(client, [make_frame(sample_images[1], cam=cam, seq=next(seq))])
                    except (redis.exceptions.RedisError, OSError):
                        continue  # its master is dead and not yet replaced
                    if wait_until(lambda c=cam, b=before: b >= 0 and annotated_count(client, c) > b, 3):
                        flowing[cam] = time.monotonic() - killed_at
            assert set(flowing) == set(cams), f"not flowing {FLOW_AGAIN_BOUND_S} s after the kill: {flowing}"
            assert redis_cluster.master_for_key(KEYS.frames(failing)) != killed  # the replica serves it now
            assert in_thread.thread.is_alive()  # Worker.run never ended on an error
        print("cameras flowing again after the master's kill (s):", {c: round(s, 1) for c, s in flowing.items()})
    finally:
        client.close()
        if redis_cluster.nodes[killed].proc is None:
            redis_cluster.start_node(killed)  # the session's cluster: back to 3 + 3
            redis_cluster.wait_ok(60)
