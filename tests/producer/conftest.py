import io
import logging

import cv2
import pytest

from common import assets
from common.logs import setup_logging


@pytest.fixture
def short_clip(tmp_path):
    """The first 12 frames of the sample clip as a small AVI (10 fps)."""
    cap = cv2.VideoCapture(str(assets.sample_path()))
    path = tmp_path / "short.avi"
    writer = None
    for _ in range(12):
        ok, frame = cap.read()
        assert ok
        if writer is None:
            h, w = frame.shape[:2]
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 10.0, (w, h))
        writer.write(frame)
    writer.release()
    cap.release()
    return path


@pytest.fixture
def log_lines():
    """Everything logged during the test, as formatted JSON lines."""
    stream = io.StringIO()
    setup_logging("DEBUG", "json", stream=stream)
    yield stream
    logging.getLogger().handlers.clear()
