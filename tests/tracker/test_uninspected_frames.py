"""Motion gating seen from the tracking stage: frames the workers did not inspect keep every track
and its event (a person standing still for a minute is one event), a regions frame keeps the tracks
outside its regions, and an object that left is ended once full frames no longer see it."""

from __future__ import annotations

from common.config import CameraConfig
from common.events_config import EventStorageConfig
from tracker.stage import CameraEvents, Record

FPS = 10.0
PERSON = ["person", 0.9, 100, 100, 160, 260, 0]
CAR = ["car", 0.8, 400, 300, 560, 400, 2]


def stage_for(tmp_path) -> CameraEvents:
    camera = CameraConfig(id="yard", source="pattern", events={"enabled": True, "min_frames": 3, "lost_after": 2.0})
    return CameraEvents(camera, EventStorageConfig(dir=str(tmp_path)), fps=FPS, reorder_window=0.0)


def feed(stage: CameraEvents, records: list[Record]) -> tuple[list, list]:
    tracked, messages = [], []
    for record in records:
        released = stage.push(record, arrived=record.seq / FPS)
        released.outputs += stage.tick(record.seq / FPS + 1.0, record.ts).outputs
        tracked += released.tracked
        messages += [item.message for item in released.outputs if hasattr(item, "message")]
    return tracked, messages


def record(seq: int, dets: list[list], inspect: str = "full", regions=()) -> Record:
    return Record(1, seq, 1000.0 + seq / FPS, 768, 576, dets, None, inspect=inspect, regions=tuple(regions))


def test_a_still_person_keeps_one_event_through_a_minute_of_uninspected_frames(tmp_path):
    stage = stage_for(tmp_path)
    frames = [record(i, [PERSON]) for i in range(10)]
    # a minute of frames nothing moved in, with a full inspection every 5 s that sees the person
    for i in range(10, 610):
        frames.append(record(i, [PERSON]) if i % 50 == 0 else record(i, [], inspect="none"))
    tracked, messages = feed(stage, frames)
    assert [m.type for m in messages if m.type != "update"] == ["new"]
    ids = {det[7] for item in tracked[10:] for det in item.detections}
    assert len(ids) == 1 and None not in ids  # every uninspected frame still shows the person's track
    assert all(len(item.detections) == 1 for item in tracked[10:])


def test_a_regions_frame_keeps_the_tracks_outside_its_regions(tmp_path):
    stage = stage_for(tmp_path)
    frames = [record(i, [PERSON, CAR]) for i in range(10)]
    # the person moves; the parked car is outside every region for 5 s
    for i in range(10, 60):
        moved = ["person", 0.9, 100 + i, 100, 160 + i, 260, 0]
        frames.append(record(i, [moved], inspect="regions", regions=[(0, 0, 300, 300)]))
    tracked, messages = feed(stage, frames)
    assert sorted(m.after["label"] for m in messages if m.type == "new") == ["car", "person"]
    assert not [m for m in messages if m.type == "end"]
    last = {det[0]: det[7] for det in tracked[-1].detections}
    assert set(last) == {"person", "car"} and None not in last.values()


def test_an_object_gone_in_full_frames_ends_its_event(tmp_path):
    stage = stage_for(tmp_path)
    frames = [record(i, [PERSON]) for i in range(10)] + [record(i, []) for i in range(10, 50)]
    _, messages = feed(stage, frames)
    assert [m.type for m in messages if m.type != "update"] == ["new", "end"]
