"""The whole tracking stage of one camera on the synthetic scene, drawn as real JPEG frames: events
reach a sink in order, snapshots and H.264 clips land on disk and decode, a new run ends open events,
and an heir ends the events a dead owner left open."""

from __future__ import annotations

import random
from collections import defaultdict

import av
import cv2
import numpy as np
import pytest

from common.config import CameraConfig
from common.events_config import EVENT_ID_RE, EventStorageConfig
from tests.tracker import scene
from tracker.lifecycle import end_orphans
from tracker.recordings import ClipWriter, EventFiles
from tracker.stage import CameraEvents, ClipRequest, CountChanges, Record, Released


def frame_jpeg(dets: list[list]) -> bytes:
    image = np.full((scene.H, scene.W, 3), 60, np.uint8)
    for det in dets:
        cv2.rectangle(image, (det[2], det[3]), (det[4], det[5]), (40, 220, 250), -1)
    return cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 70])[1].tobytes()


@pytest.fixture
def yard():
    return CameraConfig(id="yard", source="pattern", zones=scene.ZONES, lines=scene.LINES,
                        events={"min_frames": 3, "lost_after": 2.0})


def test_scene_through_the_stage(tmp_path, yard):
    storage = EventStorageConfig(dir=str(tmp_path), pre_roll=1.0, post_roll=1.0)
    files = EventFiles(tmp_path)
    done = []
    clips = ClipWriter(files, fps=scene.FPS, preset="ultrafast",
                       on_done=lambda cam, event_id, info: done.append((event_id, info))).start()
    received = []
    stage = CameraEvents(yard, storage, fps=scene.FPS, reorder_window=0.3, clips=True)
    rng = random.Random(7)
    tracked_frames = []

    def take(released: Released) -> list:  # what the owner does with the outputs, without Redis
        for item in released.outputs:
            if isinstance(item, ClipRequest):
                clips.submit("yard", item.event_id, item.frames)
                continue
            if item.snapshot:
                files.write_snapshot("yard", item.message.after["id"], item.snapshot)
            received.append(item.message)
        return released.tracked

    for i in range(scene.FRAMES):
        dets, _ = scene.detections(i, rng)
        record = Record(1, i, scene.ts(i), scene.W, scene.H, dets, frame_jpeg(dets))
        tracked_frames += take(stage.push(record, arrived=i / scene.FPS))
    tracked_frames += take(stage.tick(now=1000.0, wall=scene.ts(scene.FRAMES) + 60))
    clips.stop(60)  # writes the queued clips first

    assert [t.record.seq for t in tracked_frames] == list(range(scene.FRAMES))
    by_event = defaultdict(list)
    for message in received:
        by_event[message.after["id"]].append(message.type)
    assert len(by_event) == 6
    assert all(kinds[0] == "new" and kinds[-1] == "end" for kinds in by_event.values())
    ends = {m.after["id"]: m.after for m in received if m.type == "end"}
    for event_id, final in ends.items():
        assert EVENT_ID_RE.match(event_id)
        snapshot = files.snapshot_path("yard", event_id)
        assert snapshot.exists() and cv2.imdecode(np.frombuffer(snapshot.read_bytes(), np.uint8), 1) is not None
        assert final["has_snapshot"] and final["has_clip"]
    assert {event_id for event_id, info in done if info is not None} == set(ends)

    # One clip decoded: H.264, and exactly the frames of [start - 1 s, end + 1 s] that exist.
    event_id, final = next((k, v) for k, v in ends.items() if v["label"] == "car")
    first = max(scene.ts(0), final["start_time"] - 1.0)
    last = min(scene.ts(scene.FRAMES - 1), final["end_time"] + 1.0)
    expected = [i for i in range(scene.FRAMES) if first - 1e-6 <= scene.ts(i) <= last + 1e-6]
    with av.open(str(files.clip_path("yard", event_id))) as container:
        stream = container.streams.video[0]
        decoded = list(container.decode(stream))
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert len(decoded) == len(expected)
        assert float(stream.duration * stream.time_base) == pytest.approx(len(expected) / scene.FPS, abs=1e-3)
    assert clips.stats["written"] == 6 and clips.stats["dropped"] == 0


def test_new_run_ends_open_events_and_heir_ends_orphans(tmp_path, yard):
    emitted = []
    stage = CameraEvents(yard, EventStorageConfig(dir=str(tmp_path)), fps=10, reorder_window=0.0)
    box = ["person", 0.9, 100, 100, 140, 300, 0]
    for seq in range(5):
        emitted += stage.push(Record(1, seq, 100 + seq / 10, 640, 480, [box]), arrived=seq).outputs
    received = [e.message for e in emitted]
    assert [m.type for m in received] == ["new"]
    changes = CountChanges()  # the owner's MQTT retained counts, from each message's counts
    assert changes.since_last(emitted[0].counts["objects"]) == {"person": 1}
    assert changes.since_last(stage.lifecycle.counts()["objects"]) == {}
    checkpoint = [received[0].after]  # the open event's last state, as the event store holds it
    emitted += stage.push(Record(2, 0, 101.0, 640, 480, [box]), arrived=10).outputs
    received = [e.message for e in emitted]
    assert [m.type for m in received] == ["new", "end"]
    assert received[1].after["end_time"] == pytest.approx(100.4)
    assert changes.since_last(emitted[1].counts["objects"]) == {"person": 0}

    # A dead owner's open events, ended by the next owner from the checkpoint.
    orphans = end_orphans(checkpoint)
    assert [(m.type, m.after["id"]) for m in orphans] == [("end", received[0].after["id"])]
    assert orphans[0].before == checkpoint[0]  # it ends when it was last seen
    assert orphans[0].after["end_time"] == pytest.approx(checkpoint[0]["frame_time"])
