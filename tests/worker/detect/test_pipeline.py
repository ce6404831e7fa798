import time

import cv2
import numpy as np
import pytest
from skimage import data

from common.envelope import Frame
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
