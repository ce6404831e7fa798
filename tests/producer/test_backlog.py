"""Backlog cameras: the producer holds frames back while the workers' group is behind, so the
stream's bound never deletes an undelivered frame; frames lost with a reset stream are counted."""

import threading
import time

from common import envelope
from common.config import load_config
from common.connection import connect
from common.keys import FRAME_FIELD, WORKER_GROUP, Keys
from common.stats import read_stats
from producer import metrics
from producer.publisher import CameraPublisher

CAM = {"id": "bk", "source": "pattern", "fps": 50, "max_width": 160, "mode": "backlog"}


def start(write_config, url, **settings):
    cfg = load_config(write_config([CAM], redis_url=url, **settings), env={})
    pub = CameraPublisher(cfg.cameras[0], cfg, connect(url), threading.Event())
    thread = threading.Thread(target=pub.run, daemon=True)
    thread.start()
    return pub, thread


def consume(client, seen: list[int], seconds: float) -> None:
    """Act as a worker: read the group and acknowledge, recording each frame's seq."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        reply = client.xreadgroup(WORKER_GROUP, "test-consumer", {Keys().frames("bk"): ">"}, count=5, block=100)
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                seen.append(envelope.decode(fields[FRAME_FIELD]).seq)
                client.xack(Keys().frames("bk"), WORKER_GROUP, entry_id)


def test_backlog_producer_waits_for_workers_and_loses_nothing(write_config, redis_url, redis_client):
    maxlen = 12
    pub, thread = start(write_config, redis_url, streams={"frames_maxlen": maxlen}, producer={"send_queue": 2})
    waits_before = metrics.BACKPRESSURE_WAITS.labels(camera="bk")._value.get()
    time.sleep(1.5)  # no worker yet: at 50 fps, 75 frames would have been published without back-pressure
    key = Keys().frames("bk")
    held = [envelope.decode(f[FRAME_FIELD]).seq for _, f in redis_client.xrange(key)]
    assert held and held[0] == 0, "the stream's bound trimmed a frame no worker had"
    assert len(held) <= maxlen
    assert metrics.BACKPRESSURE_WAITS.labels(camera="bk")._value.get() > waits_before

    seen: list[int] = []
    consume(redis_client, seen, 2.0)  # the worker catches up; the producer resumes
    pub.stop.set()
    thread.join(timeout=15)
    assert not thread.is_alive()
    consume(redis_client, seen, 0.5)
    assert pub.published > len(held)
    assert seen == list(range(pub.published)), "every published frame delivered once, in order"
    stats = read_stats(redis_client, Keys(), "bk")
    assert stats["published"] == pub.published
    assert stats.get("lost", 0) == 0


def test_frames_lost_with_a_reset_stream_are_counted(write_config, own_redis, log_lines):
    pub, thread = start(write_config, own_redis.url, streams={"frames_maxlen": 12}, producer={"send_queue": 2})
    client = connect(own_redis.url)
    key = Keys().frames("bk")
    deadline = time.monotonic() + 10
    while client.xlen(key) < 4 and time.monotonic() < deadline:  # held back at the high-water mark
        time.sleep(0.1)
    time.sleep(0.5)
    unacknowledged = client.xlen(key)
    assert unacknowledged >= 4
    own_redis.restart(downtime=1.0)  # no persistence: the stream and its group are gone
    deadline = time.monotonic() + 20
    while read_stats(client, Keys(), "bk").get("lost", 0) == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    pub.stop.set()
    thread.join(timeout=15)
    assert read_stats(client, Keys(), "bk")["lost"] == unacknowledged
    assert "frames lost" in log_lines.getvalue()
    # the new stream's group starts at its first frame, so the workers get every frame since
    groups = client.xinfo_groups(key)
    assert [g["name"] for g in groups] == [WORKER_GROUP.encode()]


def test_a_slow_link_costs_no_frames(write_config, redis_server, redis_client):
    """150 ms each way between producer and Redis: batches in flight keep a 10 fps camera at 10 fps."""
    from tests.latency_proxy import LatencyProxy

    redis_client.flushall()
    with LatencyProxy(("127.0.0.1", redis_server.port), delay=0.15) as proxy:
        cam = {"id": "far", "source": "pattern", "fps": 10, "max_width": 160}
        cfg = load_config(write_config([cam], redis_url=f"redis://127.0.0.1:{proxy.port}/0"), env={})
        pub = CameraPublisher(cfg.cameras[0], cfg, connect(cfg.redis_url), threading.Event())
        thread = threading.Thread(target=pub.run, daemon=True)
        thread.start()
        late = metrics.FRAMES_DROPPED.labels(camera="far", reason="late")  # a loaded machine's doing
        queue_full = metrics.FRAMES_DROPPED.labels(camera="far", reason="queue_full")  # the link's
        deadline = time.monotonic() + 10
        while redis_client.xlen(Keys().frames("far")) == 0 and time.monotonic() < deadline:
            time.sleep(0.05)  # connecting takes several round trips
        time.sleep(0.5)
        first, late0, full0 = redis_client.xlen(Keys().frames("far")), late._value.get(), queue_full._value.get()
        time.sleep(3.0)
        published = redis_client.xlen(Keys().frames("far")) - first
        missed, dropped = late._value.get() - late0, queue_full._value.get() - full0
        pub.stop.set()
        thread.join(timeout=15)
    # One XADD per round trip would publish 10 frames at most; skipped "late" frames are the machine's.
    assert published >= 20 and published + missed >= 27, f"{published} frames in 3 s over a 300 ms round trip"
    assert dropped <= 1, f"{dropped} frames dropped because the link was slow"
