"""The tracking owner on a real redis-server: the checkpoint it leaves with the frames it publishes,
so its heir publishes each frame once, even when the former owner stopped while a frame it had read
was still waiting for an earlier one."""

from __future__ import annotations

import json
import threading

import cv2
import numpy as np

from common import envelope
from common.config import CameraConfig, Settings
from common.envelope import Frame
from common.keys import DETECTIONS_FIELD, FRAME_FIELD, Keys
from tracker.lease import Lease
from tracker.owner import CameraOwner, Outputs
from tracker.recordings import EventFiles
from tracker.store import EventStore

CAM, RUN = "yard", 1_700_000_000_000_000_000
JPEG = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))[1].tobytes()


def detect(client, keys: Keys, seq: int) -> None:
    """What a worker writes for a detected frame (no objects in it)."""
    frame = Frame(CAM, RUN, seq, RUN + seq * 100_000_000, 64, 48, JPEG, detections=[])
    client.xadd(keys.untracked(CAM), {FRAME_FIELD: envelope.encode(frame)})


def published(client, keys: Keys) -> list[int]:
    return [json.loads(f[DETECTIONS_FIELD])["seq"] for _, f in client.xrange(keys.detections(CAM))]


def owner(client, keys: Keys, tmp_path, name: str) -> CameraOwner:
    # A long reorder window: a missing frame is waited for, never given up on, within this test.
    settings = Settings(events={"dir": str(tmp_path), "reorder_window": 30.0})
    cam = CameraConfig(id=CAM, source="pattern", overlay=False, events={"enabled": True, "snapshots": False,
                                                                        "clips": False})
    out = Outputs(settings=settings, client=client, keys=keys, store=EventStore(client, keys),
                  files=EventFiles(tmp_path), clips=None, mqtt=None, webhooks=None, name=name)
    lease = Lease(client, keys.tracker_lease(CAM), name, ttl=30.0)
    assert lease.acquire()
    heir = CameraOwner(out, cam, lease, threading.Event())
    heir._take_over()
    return heir


def test_heir_publishes_each_frame_once_when_the_former_owner_left_one_waiting(redis_client, keys, tmp_path):
    # Frames up to seq 0 were published by an earlier owner.
    redis_client.set(keys.tracker_checkpoint(CAM), json.dumps({"id": "0-0", "released": [RUN, 0]}))
    detect(redis_client, keys, 3)  # seq 3 comes first: it waits for 1 and 2
    detect(redis_client, keys, 1)  # seq 1 is next in line: published at once
    first = owner(redis_client, keys, tmp_path, "a")
    first.step()
    assert published(redis_client, keys) == [1]
    # seq 3's entry was read before seq 1's, so reading must resume before it; but seq 1 is out.
    checkpoint = json.loads(redis_client.get(keys.tracker_checkpoint(CAM)))
    assert checkpoint["ids"] == {"untracked": "0-0", "detected": "0-0"} and checkpoint["released"] == [RUN, 1]
    first.lease.release()  # the owner goes; seq 3 never left it

    detect(redis_client, keys, 2)
    heir = owner(redis_client, keys, tmp_path, "b")
    for _ in range(3):
        heir.step()
    assert published(redis_client, keys) == [1, 2, 3]
    checkpoint = json.loads(redis_client.get(keys.tracker_checkpoint(CAM)))
    assert checkpoint["released"] == [RUN, 3]
    assert checkpoint["ids"] == {"untracked": redis_client.xrange(keys.untracked(CAM))[-1][0].decode(), "detected": "0-0"}
