import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
from skimage import data

from common.envelope import Frame, Motion
from common.motion_config import MotionConfig
from tests.worker.conftest import make_frame
from worker.detect.pipeline import FrameDecodeError, FrameProcessor, decode_jpeg


def test_process_returns_annotated_frame_with_detections(detector, camera):
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    frame = make_frame(image, seq=42, run=7)
    wall_started = time.perf_counter()
    out = FrameProcessor(camera, detector).process(frame, fps=10.0)
    wall_ms = (time.perf_counter() - wall_started) * 1000
    # the thread's CPU for the frame's work: some, and never more than the call's wall time
    assert 0 < out.meta["work_cpu_ms"] <= wall_ms + 1
    assert (out.cam, out.run, out.seq, out.ts) == (frame.cam, frame.run, frame.seq, frame.ts)
    assert "person" in {d.label for d in out.detections}
    assert all(d.score >= camera.detection.min_score for d in out.detections)
    decoded = cv2.imdecode(np.frombuffer(out.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert decoded is not None and decoded.shape == image.shape
    assert out.jpeg != frame.jpeg and out.meta["infer_ms"] > 0
    person = max((d for d in out.detections if d.label == "person"), key=lambda d: d.score)
    x1, y1, x2, y2 = person.box
    source = decode_jpeg(frame.jpeg).astype(int)
    edge = np.abs(decoded[y1:y2, x1:x1 + 2].astype(int) - source[y1:y2, x1:x1 + 2]).mean()
    assert edge > 20  # the box is drawn where the person is


@pytest.mark.parametrize("payload", [b"\xff\xd8" + b"garbage" * 50, b"", b"not a jpeg"])
def test_garbage_jpeg_raises_decode_error(detector, camera, payload):
    frame = Frame("cam1", 1, 1, 1, 10, 10, payload)
    with pytest.raises(FrameDecodeError, match="undecodable JPEG"):
        FrameProcessor(camera, detector).process(frame)


def test_camera_filters_apply(detector, camera):
    image = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    only_people = camera.model_copy(update={"detection": camera.detection.model_copy(update={"labels": ["person"]})})
    assert FrameProcessor(only_people, detector).process(make_frame(image)).detections == []
    assert "cup" in {d.label for d in FrameProcessor(camera, detector).process(make_frame(image)).detections}


def test_overlay_follows_the_camera_setting(detector, camera):
    image = np.full((240, 320, 3), 230, np.uint8)
    with_overlay = FrameProcessor(camera.model_copy(update={"overlay": True}), detector).annotate(image, [], fps=5.0,
                                                                                            ts_ns=0)
    plain = FrameProcessor(camera.model_copy(update={"overlay": False}), detector).annotate(image, [])
    assert np.any(with_overlay[:20, :100] != 230) and np.array_equal(plain, image)


def _verdict(frame: Frame, inspect: str) -> Frame:
    return Frame(frame.cam, frame.run, frame.seq, frame.ts, frame.width, frame.height, frame.jpeg,
                 motion=Motion(inspect, ()))


def test_a_still_scene_shows_its_last_drawing_until_the_redraw_interval(detector, camera):
    """Frames nothing moved in, whose scene holds objects, reuse the last drawing of the same objects
    (no decode, no encode) while it is younger than motion.redraw_interval, then are drawn anew."""
    gated = camera.model_copy(update={"motion": MotionConfig(enabled=True, redraw_interval=1.0)})
    processor = FrameProcessor(gated, detector)
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    noisy = np.clip(image.astype(int) + np.random.default_rng(1).integers(-3, 4, image.shape), 0, 255)
    second_take = make_frame(noisy.astype(np.uint8))
    t0 = 1_000_000_000_000
    first = processor.process(_verdict(make_frame(image, seq=1, ts=t0), "full"))
    assert "person" in {d.label for d in first.detections}

    still = processor.process(_verdict(replace(second_take, seq=2, ts=t0 + 500_000_000), "none"))
    assert still.jpeg == first.jpeg and still.detections == first.detections
    assert still.meta["picture_age_ms"] == 500.0 and still.meta["infer_ms"] == 0.0
    assert "decoded" not in still.meta.get("t", {})

    redrawn = processor.process(_verdict(replace(second_take, seq=3, ts=t0 + 1_200_000_000), "none"))
    assert redrawn.jpeg not in (first.jpeg, second_take.jpeg) and redrawn.detections == first.detections
    assert "picture_age_ms" not in redrawn.meta and "reencoded" in redrawn.meta["t"]
    again = processor.process(_verdict(replace(second_take, seq=4, ts=t0 + 1_700_000_000), "none"))
    assert again.jpeg == redrawn.jpeg and again.meta["picture_age_ms"] == 500.0


def test_redraw_interval_0_draws_every_still_frame(detector, camera):
    gated = camera.model_copy(update={"motion": MotionConfig(enabled=True, redraw_interval=0)})
    processor = FrameProcessor(gated, detector)
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    first = processor.process(_verdict(make_frame(image, seq=1, ts=10**12), "full"))
    still = processor.process(_verdict(make_frame(image, seq=2, ts=10**12 + 100_000_000), "none"))
    assert still.detections == first.detections and "reencoded" in still.meta["t"]
    assert "picture_age_ms" not in still.meta


def test_a_still_frame_with_other_objects_than_the_drawing_is_drawn(detector, camera):
    """The drawing is reused only while it shows what the scene holds: a regions frame that changed
    the scene is followed by a fresh drawing."""
    gated = camera.model_copy(update={"motion": MotionConfig(enabled=True, redraw_interval=5.0)})
    processor = FrameProcessor(gated, detector)
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    first = processor.process(_verdict(make_frame(image, seq=1, ts=10**12), "full"))
    processor.still.drawing = replace(processor.still.drawing, shows=first.detections[:0])  # a drawing of an empty scene
    still = processor.process(_verdict(make_frame(image, seq=2, ts=10**12 + 100_000_000), "none"))
    assert still.detections == first.detections and "reencoded" in still.meta["t"]
    assert "picture_age_ms" not in still.meta
