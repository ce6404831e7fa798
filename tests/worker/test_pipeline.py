import cv2
import pytest
from skimage import data

from common.envelope import Frame
from tests.worker.conftest import make_frame
from worker.pipeline import FrameDecodeError, FrameProcessor


def test_process_returns_annotated_frame_with_detections(detector, camera):
    image = cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR)
    frame = make_frame(image, seq=42, run=7)
    out = FrameProcessor(camera, detector).process(frame, fps=10.0)
    assert (out.cam, out.run, out.seq, out.ts) == (frame.cam, frame.run, frame.seq, frame.ts)
    assert "person" in {d.label for d in out.detections}
    assert out.jpeg != frame.jpeg and cv2.imdecode(__import__("numpy").frombuffer(out.jpeg, "uint8"), 1) is not None
    assert out.meta["infer_ms"] > 0


def test_garbage_jpeg_raises_decode_error(detector, camera):
    frame = Frame("cam1", 1, 1, 1, 10, 10, b"\xff\xd8" + b"garbage" * 50)
    with pytest.raises(FrameDecodeError):
        FrameProcessor(camera, detector).process(frame)


def test_camera_filters_apply(detector, camera):
    image = cv2.cvtColor(data.coffee(), cv2.COLOR_RGB2BGR)
    only_people = camera.model_copy(update={"detection": camera.detection.model_copy(update={"labels": ["person"]})})
    assert FrameProcessor(only_people, detector).process(make_frame(image)).detections == []
    assert "cup" in {d.label for d in FrameProcessor(camera, detector).process(make_frame(image)).detections}
