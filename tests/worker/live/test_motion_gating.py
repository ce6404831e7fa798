"""Motion gating in the running pipeline: a real `framecast producer` plays a clip once, real
`framecast worker` processes detect, on a real redis-server. A static scene costs no inference; people
walking in are inspected and detected; an event camera keeps a person standing still in one event
across the frames nobody inspected. Every process is started here and ended by its PID."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from common import envelope
from common.keys import FRAME_FIELD, Keys
from tests.ledger import stream_entries
from tests.tracker.test_pipeline_events import Pipeline, events, records

pytestmark = pytest.mark.slow

CAM = "yard"
W, H = 768, 576  # the sample clip's size: a region (300x300) is smaller than the frame


def plate_and_frames(count: int, start: int) -> tuple[np.ndarray, list[np.ndarray]]:
    """The sample clip's empty hall (per-pixel median of frames spread over the clip) and `count` of
    its frames from `start` (people walking)."""
    from common import assets

    cap = cv2.VideoCapture(str(assets.sample_path()))
    spread, frames, index = [], [], 0
    while True:
        ok, image = cap.read()
        if not ok:
            break
        if index % 40 == 0:
            spread.append(image)
        if start <= index < start + count:
            frames.append(image)
        index += 1
    cap.release()
    return np.median(np.stack(spread), axis=0).astype(np.uint8), frames


def write_clip(path: Path, images: list[np.ndarray]) -> Path:
    rng = np.random.default_rng(3)
    out = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (W, H))
    for image in images:  # sensor noise on every frame, the scene itself still
        noisy = np.clip(image.astype(np.int16) + rng.normal(0, 2.5, image.shape).round().astype(np.int16), 0, 255)
        out.write(noisy.astype(np.uint8))
    out.release()
    return path


def start(tmp_path: Path, redis_url: str, clip: Path, camera: dict) -> Pipeline:
    pipeline = Pipeline(tmp_path, redis_url, clip)
    doc = {"redis_url": redis_url, "log_format": "text",
           "events": {"dir": "events", "lease_ttl": 5.0, "preset": "ultrafast"},
           "streams": {"annotated_maxlen": 1000},
           "cameras": [{"id": CAM, "source": str(clip), "mode": "backlog", "loop": False, "fps": 10,
                        "max_width": W, **camera}]}
    pipeline.config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return pipeline


def all_recorded(pipeline: Pipeline, frames: int):
    def check():
        producer = pipeline.procs.get("producer")
        return (producer is None or producer.poll() is not None) and len(records(pipeline.client, CAM)) >= frames
    return check


def test_only_frames_with_motion_cost_inference(tmp_path, redis_url):
    plate, walking = plate_and_frames(50, 100)
    clip = write_clip(tmp_path / "walk-in.avi", [plate] * 40 + walking + [plate] * 120)
    # people only: the model also sees two "cars" in the hall's corner, which would be drawn on every frame
    pipeline = start(tmp_path, redis_url, clip, {"motion": {"enabled": True, "full_frame_interval": 2.0, "hold": 1.0},
                                                 "detection": {"labels": ["person"]}})
    client, keys = pipeline.client, Keys()
    try:
        pipeline.start("worker", "worker")
        pipeline.wait(lambda: client.exists(keys.frames(CAM)), 60, "the worker's consumer group")
        pipeline.start("producer", "producer", "--once")
        pipeline.wait(all_recorded(pipeline, 210), 150, "every frame's detection record")
        recs = sorted(records(client, CAM), key=lambda r: r["seq"])
        assert [r["seq"] for r in recs] == list(range(210))
        inspect = [r["inspect"] for r in recs]

        # The still hall: the first frame and one in each 2 s slot (at the camera's own phase) are
        # inspected in full, nothing else.
        fulls = [i for i in range(40) if inspect[i] == "full"]
        assert fulls[0] == 0 and len(fulls) in (2, 3) and set(inspect[:40]) == {"none", "full"}, inspect[:40]
        assert all(0 < b - a <= 20 for a, b in zip(fulls, fulls[1:], strict=False)), fulls
        # People walking in: every frame is inspected, and people are found on them.
        assert "none" not in inspect[40:90]
        assert sum(any(d["label"] == "person" for d in r["detections"]) for r in recs[40:90]) >= 45
        # They are gone: once the background has let go of where they walked (it learns slowly where
        # something moved, so it keeps no trails), the hall costs nothing again.
        assert inspect[170:210].count("none") >= 35

        # The figures count what the records show: frames by inspection, and every model run.
        stats = {k.decode(): int(float(v)) for k, v in client.hgetall(keys.stats(CAM)).items()}
        assert stats["not_inspected"] == inspect.count("none") >= 70
        assert stats["inspected_full"] == inspect.count("full")
        assert stats["inspected_regions"] == inspect.count("regions")
        runs = sum(len(r.get("regions") or ()) or 1 for r in recs if r["inspect"] != "none")
        assert stats["inference_calls"] == runs < 210

        # A frame nobody inspected, with nothing to draw, is the producer's JPEG as it was sent.
        published = {envelope.decode(f[FRAME_FIELD]).seq: envelope.decode(f[FRAME_FIELD])
                     for _, f in stream_entries(client, keys.annotated(CAM))}
        idle = [seq for seq in published if inspect[seq] == "none" and not recs[seq]["detections"]]
        assert idle
        for seq in idle:
            assert published[seq].jpeg[:2] == b"\xff\xd8" and "decoded" not in published[seq].marks_us()
        pipeline.stop("worker")
    finally:
        pipeline.stop_all()


def test_a_person_standing_still_keeps_one_event_across_uninspected_frames(tmp_path, redis_url):
    plate, (standing,) = plate_and_frames(1, 120)
    # The hall, then the same people standing still for 25 s, then the hall again. Where something
    # moved the background learns slowly (no trails), so people who stopped are motion for ~10 s.
    clip = write_clip(tmp_path / "stand.avi", [plate] * 20 + [standing] * 250 + [plate] * 40)
    pipeline = start(tmp_path, redis_url, clip, {
        "motion": {"enabled": True, "full_frame_interval": 3.0, "hold": 0.5},
        "events": {"enabled": True, "lost_after": 1.5, "clips": False, "snapshots": False},
        "detection": {"labels": ["person"], "min_score": 0.5}})
    client = pipeline.client
    try:
        pipeline.start("worker", "worker")
        pipeline.wait(lambda: client.get(Keys().tracker_lease(CAM)), 60, "a tracking owner")
        pipeline.start("producer", "producer", "--once")
        pipeline.wait(all_recorded(pipeline, 310), 200, "every frame's detection record")
        pipeline.wait(lambda: events(client, CAM) and all(e["end_time"] for e in events(client, CAM)), 30,
                      "the events to end")
        recs = sorted(records(client, CAM), key=lambda r: r["seq"])
        ts = {r["seq"]: r["ts"] / 1e9 for r in recs}
        inspect = [r["inspect"] for r in recs]
        standing_still = inspect[170:270]
        assert standing_still.count("none") >= 70, "".join(v[0] for v in inspect)  # most not inspected
        # lost_after (1.5 s) is shorter than the full-frame interval (3 s): without the tracker holding
        # tracks through uninspected frames every event would end and restart each interval.
        evs = events(client, CAM)
        assert evs and all(e["label"] == "person" for e in evs)
        # Every event open when the frames stopped being inspected lasts through them: nothing ends
        # only because the scene went still (lost_after 1.5 s < the full-frame interval 3 s).
        first_none = next(seq for seq in range(170, 270) if inspect[seq] == "none")
        still_from, still_to = ts[first_none], ts[265]
        open_then = [e for e in evs if e["start_time"] <= still_from <= e["end_time"]]
        assert len(open_then) >= 5, evs
        assert all(e["end_time"] >= still_to for e in open_then), (
            [(round(e["start_time"] - ts[0], 1), round(e["end_time"] - ts[0], 1)) for e in evs],
            "".join(v[0] for v in inspect))
        assert "owner failed" not in (tmp_path / "worker.log").read_text()
        # the frames nobody inspected still show the people's tracks
        held = [r for r in recs[170:270] if r["inspect"] == "none"]
        assert all(r["detections"] and all(d["track_id"] is not None for d in r["detections"]) for r in held)
        # ... on the owner's last drawing of the same tracks while it is younger than redraw_interval
        # (1 s): one decode and encode a second of stillness, not one a frame
        pictures = {frame.seq: frame.jpeg for frame in (envelope.decode(fields[FRAME_FIELD]) for _, fields in
                                                        client.xrange(Keys().annotated(CAM)))}
        drawn_at: dict[bytes, list[float]] = {}
        for r in held:
            drawn_at.setdefault(pictures[r["seq"]], []).append(ts[r["seq"]])
        assert len(drawn_at) < len(held) / 3, (len(drawn_at), len(held))
        assert all(max(times) - min(times) < 1.0 for times in drawn_at.values())
        pipeline.stop("worker")
    finally:
        pipeline.stop_all()
