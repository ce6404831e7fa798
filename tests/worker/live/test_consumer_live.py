"""Live and mixed-mode behaviour of one worker: skipping to the newest frame, where a new group
starts, several cameras in one process with a shared detector, heartbeats and metrics."""

import os
import socket
import time

from prometheus_client import REGISTRY

from common import envelope
from common.config import load_config
from common.keys import FRAME_FIELD, WORKER_GROUP
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


def sample(name, camera):
    return REGISTRY.get_sample_value(name, {"camera": camera}) or 0.0


def test_a_live_worker_that_falls_behind_processes_only_the_newest_frame(write_config, redis_url, redis_client,
                                                                         sample_images):
    settings = settings_for(write_config, redis_url, mode="live")
    with InProcessWorker(settings):
        assert wait_until(lambda: redis_client.exists(KEYS.frames("cam1")), 30)
        time.sleep(0.3)
        pipe = redis_client.pipeline(transaction=True)  # ten fresh frames arrive at once
        for seq in range(10):
            pipe.xadd(KEYS.frames("cam1"), {FRAME_FIELD: envelope.encode(make_frame(sample_images[seq], seq=seq))})
        pipe.execute()
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam1")) == 1, 60)
        assert wait_until(lambda: read_stats(redis_client, KEYS, "cam1").get("skipped_stale") == 9, 30)
    assert [f.seq for f in annotated(redis_client, "cam1")] == [9]
    assert pending(redis_client, "cam1") == 0


def test_one_worker_serves_a_live_and_a_backlog_camera(write_config, redis_url, redis_client, sample_images):
    cams = [{"id": "cam1", "source": "pattern", "mode": "live"},
            {"id": "cam2", "source": "pattern", "mode": "backlog", "detection": {"min_score": 0.3}}]
    settings = load_config(write_config(cams, redis_url=redis_url, worker={"heartbeat_ttl": 1.5}), env={})
    # Queued before any worker: a live camera's old frames are not worth processing, a backlog's are.
    publish(redis_client, [make_frame(sample_images[i], cam="cam1", seq=i) for i in range(3)])
    publish(redis_client, [make_frame(sample_images[i], cam="cam2", seq=i) for i in range(3)])
    processed_before = sample("framecast_worker_frames_processed_total", "cam2")
    with InProcessWorker(settings) as worker:
        # One detector for both cameras: min_score is a filter, not a different model.
        assert worker.cams["cam1"].processor.detector is worker.cams["cam2"].processor.detector
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam2")) == 3, 60)
        publish(redis_client, [make_frame(sample_images[i], cam="cam2", seq=i) for i in range(3, 8)])
        for seq in range(3, 6):
            publish(redis_client, [make_frame(sample_images[seq], cam="cam1", seq=seq)])
            assert wait_until(lambda s=seq: s in [f.seq for f in annotated(redis_client, "cam1")], 60)
        assert wait_until(lambda: redis_client.xlen(KEYS.annotated("cam2")) == 8, 60)
        heartbeats = lambda: live_members(redis_client, KEYS, "worker")  # noqa: E731
        assert wait_until(lambda: heartbeats()[0]["last_frame_ts"] > 0 and heartbeats()[0]["processed"] == 11, 10)
        [info] = heartbeats()
        assert wait_until(lambda: sample("framecast_worker_group_lag", "cam2") == 0.0 and
                          sample("framecast_worker_group_pending", "cam2") == 0.0, 10)
    assert [f.seq for f in annotated(redis_client, "cam1")] == [3, 4, 5]
    assert [f.seq for f in annotated(redis_client, "cam2")] == list(range(8))
    for frame in annotated(redis_client, "cam1") + annotated(redis_client, "cam2"):
        assert frame.meta["worker"] == worker.name and frame.meta["published_ns"] >= frame.ts
        assert frame.detections is not None and frame.meta["infer_ms"] > 0
    assert info["id"] == worker.name and info["host"] == socket.gethostname() and info["pid"] == os.getpid()
    assert info["cameras"] == ["cam1", "cam2"] and info["modes"] == {"cam1": "live", "cam2": "backlog"}
    assert info["model"] == [worker.cams["cam1"].model_name] and set(info["fps"]) == {"cam1", "cam2"}
    assert time.time() - 30 < info["last_frame_ts"] <= time.time()
    assert live_members(redis_client, KEYS, "worker") == []  # deregistered on stop
    assert sample("framecast_worker_frames_processed_total", "cam2") - processed_before == 8
    stats = read_stats(redis_client, KEYS, "cam2")
    assert stats["processed"] == 8 and stats["latency_ms"] > 0 and stats["infer_ms"] > 0
    record = redis_client.xrange(KEYS.detections("cam2"))[-1][1]
    assert b'"seq":7' in record[b"d"] and worker.name.encode() in record[b"d"]
    assert redis_client.xinfo_groups(KEYS.frames("cam1"))[0]["name"] == WORKER_GROUP.encode()
