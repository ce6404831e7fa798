"""The tracking owner's figures, counted through the camera's CameraAccount, on a real redis-server:
a person walks across a counting line, and the Prometheus metrics say what the counts hash and the
event feed say (one take-over, the frames published, a new and an end event, one crossing, the
objects in view back to 0 once the event ended); the camera's stats hash stays untouched."""

from __future__ import annotations

import json
import threading
import time

from prometheus_client import REGISTRY

from common import envelope
from common.config import CameraConfig, Settings
from common.envelope import Detection, Frame
from common.keys import DETECTIONS_FIELD, FRAME_FIELD
from tests.tracker.test_owner import JPEG, RUN
from tracker.lease import Lease
from tracker.owner import CameraOwner, Outputs
from tracker.recordings import EventFiles
from tracker.store import EventStore

CAM = "lobby"  # a camera of this test's own: the process-wide metrics of other tests are not its
FRAMES = 12


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, {"camera": CAM, **labels}) or 0.0


def crossings() -> float:
    return sum(s.value for metric in REGISTRY.collect() if metric.name == "framecast_line_crossings"
               for s in metric.samples if s.name.endswith("_total") and s.labels.get("camera") == CAM)


def test_the_owner_counts_its_figures_through_the_camera_account(redis_client, keys, tmp_path):
    before = {"published": sample("framecast_tracker_frames_published_total"),
              "acquired": sample("framecast_tracker_acquired_total"),
              "new": sample("framecast_events_total", label="person", type="new"),
              "end": sample("framecast_events_total", label="person", type="end"),
              "crossings": crossings()}
    settings = Settings(events={"dir": str(tmp_path), "reorder_window": 30.0})
    camera = CameraConfig(id=CAM, source="pattern", overlay=False,
                          lines=[{"name": "gate", "points": [[0.5, 0.0], [0.5, 1.0]]}],
                          events={"snapshots": False, "clips": False})
    out = Outputs(settings=settings, client=redis_client, keys=keys, store=EventStore(redis_client, keys),
                  files=EventFiles(tmp_path), clips=None, mqtt=None, webhooks=None, name="a")
    redis_client.set(keys.tracker_checkpoint(CAM), json.dumps({"released": [RUN, 0]}))
    for seq in range(1, FRAMES + 1):  # left to right across the frame's middle, 4 px a frame
        person = Detection("person", 0.9, (4 * seq - 4, 8, 4 * seq + 12, 40), 0)
        frame = Frame(CAM, RUN, seq, RUN + seq * 100_000_000, 64, 48, JPEG, detections=[person])
        redis_client.xadd(keys.untracked(CAM), {FRAME_FIELD: envelope.encode(frame)})
    lease = Lease(redis_client, keys.tracker_lease(CAM), "a", ttl=30.0)
    assert lease.acquire()
    owner = CameraOwner(out, camera, lease, threading.Event())
    assert out.account(CAM) is owner.account  # one account per camera in the process
    thread = threading.Thread(target=owner.run, name=f"events-{CAM}", daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while redis_client.xlen(keys.detections(CAM)) < FRAMES and time.monotonic() < deadline:
        time.sleep(0.05)
    assert sample("framecast_tracker_owned") == 1
    assert sample("framecast_tracked_objects", label="person") == 1
    owner.stop.set()  # a clean stop ends the open event
    thread.join(10)
    assert not thread.is_alive()

    records = [json.loads(f[DETECTIONS_FIELD]) for _, f in redis_client.xrange(keys.detections(CAM))]
    assert [r["seq"] for r in records] == list(range(1, FRAMES + 1))
    feed = [json.loads(f[b"e"])["type"] for _, f in redis_client.xrange(keys.eventfeed(CAM))]
    counts = {k.decode(): int(v) for k, v in redis_client.hgetall(keys.counts(CAM)).items()}
    crossed = sum(n for field, n in counts.items() if field.startswith("line:gate:"))
    assert feed[0] == "new" and feed[-1] == "end" and crossed == 1
    assert sample("framecast_tracker_frames_published_total") - before["published"] == FRAMES
    assert sample("framecast_tracker_acquired_total") - before["acquired"] == 1
    assert sample("framecast_tracker_owned") == 0
    assert sample("framecast_events_total", label="person", type="new") - before["new"] == 1
    assert sample("framecast_events_total", label="person", type="end") - before["end"] == 1
    assert crossings() - before["crossings"] == crossed
    assert sample("framecast_tracked_objects", label="person") == 0
    assert not redis_client.exists(keys.stats(CAM))  # the tracker's figures have no stats-hash field
