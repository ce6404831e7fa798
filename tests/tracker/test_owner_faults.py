"""The tracking owner on a real redis-server keeps the camera through a frame it cannot draw on: a
untracked entry whose JPEG does not decode (corrupt data in Redis) is published as it came,
counted and logged, and the frames after it are tracked and published by the same owner, whose
thread and lease live on."""

from __future__ import annotations

import json
import threading
import time

from prometheus_client import REGISTRY

from common import envelope
from common.envelope import Detection, Frame
from common.keys import FRAME_FIELD
from tests.tracker.test_owner import CAM, RUN, detect, owner, published


def render_errors() -> float:
    return REGISTRY.get_sample_value("framecast_events_errors_total", {"camera": CAM, "chore": "render"}) or 0.0


def test_a_frame_that_cannot_be_drawn_on_is_published_as_it_came_and_tracking_goes_on(
        redis_client, keys, tmp_path):
    before = render_errors()
    # Frames up to seq 0 were published by an earlier owner: seq 1 is next in line (no reorder wait).
    redis_client.set(keys.tracker_checkpoint(CAM), json.dumps({"id": "0-0", "released": [RUN, 0]}))
    detect(redis_client, keys, 1)
    # with a box to draw (a frame with nothing to draw is passed through undecoded)
    corrupt = Frame(CAM, RUN, 2, RUN + 2 * 100_000_000, 64, 48, b"\xff\xd8 not a jpeg",
                    detections=[Detection("person", 0.9, (1, 1, 20, 20), 0)])
    redis_client.xadd(keys.untracked(CAM), {FRAME_FIELD: envelope.encode(corrupt)})
    detect(redis_client, keys, 3)
    tracker = owner(redis_client, keys, tmp_path, "a")
    thread = threading.Thread(target=tracker.run, name=f"events-{CAM}", daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 10
        while published(redis_client, keys) != [1, 2, 3] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert published(redis_client, keys) == [1, 2, 3]
        assert thread.is_alive() and tracker.lease.held and not tracker.failed
        assert render_errors() == before + 1
        annotated = [envelope.decode(f[FRAME_FIELD]) for _, f in redis_client.xrange(keys.annotated(CAM))]
        assert [f.jpeg for f in annotated if f.seq == 2] == [corrupt.jpeg]
        detect(redis_client, keys, 4)
        deadline = time.monotonic() + 10
        while published(redis_client, keys)[-1:] != [4] and time.monotonic() < deadline:
            time.sleep(0.05)
        assert published(redis_client, keys) == [1, 2, 3, 4]
    finally:
        tracker.stop.set()
        thread.join(10)
    assert not thread.is_alive()
