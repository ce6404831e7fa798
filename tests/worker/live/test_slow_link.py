"""A worker 100 ms (each way) from Redis: reads sized to the round trip and a publishing thread that
writes while the loop detects keep a backlog camera well above one frame per round trip, and every
frame still gets exactly one detection record."""

import json
import time

import cv2

from common.config import load_config
from common.connection import connect
from common.keys import DETECTIONS_FIELD, WORKER_GROUP
from tests.latency_proxy import LatencyProxy
from tests.worker.conftest import make_frame
from tests.worker.live.test_consumer import KEYS, InProcessWorker, publish, wait_until

DELAY_S = 0.1  # each way
FRAMES = 80
FROM, TO = 10, 70  # the frames timed: the steady state, after connecting and sizing the reads


def test_a_slow_link_costs_round_trips_in_parallel_not_per_frame(write_config, redis_server, redis_url, redis_client,
                                                                 sample_images):
    # Small frames: the test is about round trips, not about the machine's detection speed.
    small = [cv2.resize(image, (192, 144)) for image in sample_images]
    publish(redis_client, [make_frame(small[i % 40], cam="far", seq=i) for i in range(FRAMES)])
    redis_client.xgroup_create(KEYS.frames("far"), WORKER_GROUP, id="0")  # the backlog queued before any worker
    with LatencyProxy(("127.0.0.1", redis_server.port), delay=DELAY_S) as proxy:
        url = f"redis://127.0.0.1:{proxy.port}/0"
        cam = {"id": "far", "source": "pattern", "mode": "backlog"}
        settings = load_config(write_config([cam], redis_url=url), env={})
        with InProcessWorker(settings, connect(url)):
            # Timed in the steady state: connecting (several round trips per connection) and sizing the
            # reads to the link come first.
            assert wait_until(lambda: redis_client.xlen(KEYS.detections("far")) >= FROM, 60, step=0.01)
            first = time.monotonic()
            assert wait_until(lambda: redis_client.xlen(KEYS.detections("far")) >= TO, 60, step=0.01)
            elapsed = time.monotonic() - first
            assert wait_until(lambda: redis_client.xlen(KEYS.detections("far")) >= FRAMES, 60)
    fps = (TO - FROM) / elapsed
    per_round_trip = 1 / (2 * DELAY_S)  # one synchronous round trip per frame allows at most this
    print(f"{TO - FROM} frames over a {2 * DELAY_S * 1000:.0f} ms round trip: {fps:.1f} frames/s "
          f"({fps / per_round_trip:.1f}x one round trip per frame)")
    assert fps > 2 * per_round_trip, f"{fps:.1f} frames/s over a {2 * DELAY_S * 1000:.0f} ms round trip"
    seqs = sorted(json.loads(f[DETECTIONS_FIELD])["seq"] for _, f in redis_client.xrange(KEYS.detections("far")))
    assert seqs == list(range(FRAMES))  # every frame exactly once
    assert redis_client.xpending(KEYS.frames("far"), WORKER_GROUP)["pending"] == 0
    assert int(redis_client.hget(KEYS.stats("far"), "processed")) == FRAMES
