"""The worker loop rides out Redis trouble by itself: FLUSHALL under a blocked read, Redis down at
start, and frames a dead consumer left pending on a live camera (too old by the time they are reclaimed)."""

import threading
import time

from common.config import load_config
from common.connection import connect
from common.keys import WORKER_GROUP
from common.registry import live_members
from common.stats import read_stats
from tests.worker.conftest import make_frame
from tests.worker.live.test_consumer import (
    KEYS,
    InProcessWorker,
    annotated,
    pending,
    publish,
    settings_for,
    wait_until,
)
from worker.live import groups
from worker.live.consumer import Worker


def test_flushall_under_a_blocked_worker_recreates_the_group(write_config, redis_url, redis_client, sample_images):
    settings = settings_for(write_config, redis_url, block_ms=3000)  # blocked in XREADGROUP when flushed
    with InProcessWorker(settings) as worker:
        publish(redis_client, [make_frame(sample_images[0], seq=0)])
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) == 1, 60)
        time.sleep(0.3)
        redis_client.flushall()  # the stream and its group vanish; the blocked read is UNBLOCKED
        # Backlog mode: frames published before the group is back are still processed (group from '0').
        publish(redis_client, [make_frame(sample_images[i], seq=i) for i in range(1, 5)])
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) == 4, 60)
        assert [f.seq for f in annotated(redis_client, "cam1")] == [1, 2, 3, 4]
        assert wait_until(lambda: pending(redis_client, "cam1") == 0, 30)
        # Its heartbeat comes back too, so the web tier sees it again.
        assert wait_until(lambda: [w["id"] for w in live_members(redis_client, KEYS, "worker")] == [worker.name], 30)


def test_live_worker_recovers_from_restart_and_flushall(write_config, own_redis, sample_images):
    settings = settings_for(write_config, own_redis.url, mode="live", max_frame_age=30.0)
    client = connect(own_redis.url)
    group_exists = lambda: any(g["name"] == WORKER_GROUP.encode() for g in client.xinfo_groups(KEYS.frames("cam1")))  # noqa: E731

    def groups_present():
        try:
            return group_exists()
        except Exception:
            return False

    with InProcessWorker(settings):
        assert wait_until(groups_present, 30)
        publish(client, [make_frame(sample_images[0], seq=0)])
        assert wait_until(lambda: client.xlen(KEYS.annotated("cam1")) == 1, 60)
        own_redis.restart(downtime=1.0)
        client.flushall()
        # Live groups start at new frames ('$'): publish once the worker has re-created it.
        assert wait_until(groups_present, 60)
        for seq in range(1, 4):
            publish(client, [make_frame(sample_images[seq], seq=seq)])
            assert wait_until(lambda s=seq: s in [f.seq for f in annotated(client, "cam1")], 60)
    assert [f.seq for f in annotated(client, "cam1")] == [1, 2, 3]


def test_worker_started_while_redis_is_down_waits_for_it(write_config, own_redis, sample_images):
    settings = settings_for(write_config, own_redis.url)
    own_redis.kill()
    stop = threading.Event()
    worker = Worker(settings, settings.cameras, connect(own_redis.url), stop)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        time.sleep(1.5)
        assert thread.is_alive()
        own_redis.start()
        client = connect(own_redis.url)
        publish(client, [make_frame(sample_images[i], seq=i) for i in range(3)])
        assert wait_until(lambda: client.xlen(KEYS.annotated("cam1")) == 3, 60)
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_live_frames_reclaimed_too_late_are_dropped(write_config, redis_url, redis_client, sample_images):
    settings = load_config(write_config([{"id": "cam1", "source": "pattern", "mode": "live", "max_frame_age": 0.3}],
                                        redis_url=redis_url, worker={"claim_idle_ms": 500}), env={})
    stream = KEYS.frames("cam1")
    groups.ensure_group(redis_client, stream, "$")
    publish(redis_client, [make_frame(sample_images[i], seq=i) for i in range(5)])
    # A consumer that read the frames while they were fresh and died before acking them.
    redis_client.xreadgroup(WORKER_GROUP, "ghost", {stream: ">"}, count=5)
    assert pending(redis_client, "cam1") == 5
    with InProcessWorker(settings):
        assert wait_until(lambda: pending(redis_client, "cam1") == 0, 30)
        assert wait_until(lambda: read_stats(redis_client, KEYS, "cam1").get("skipped_stale", 0) == 5, 30)
        publish(redis_client, [make_frame(sample_images[5], seq=5)])
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) == 1, 60)
    assert [f.seq for f in annotated(redis_client, "cam1")] == [5]  # the reclaimed ones were too old
