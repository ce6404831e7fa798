import time

import cv2
import numpy as np
import pytest

from common import assets
from common.config import CameraConfig, DetectionConfig
from common.envelope import Frame


@pytest.fixture(scope="session")
def detector():
    """The bundled SSD MobileNet v2 COCO detector, loaded once for the whole session."""
    from worker.detect import create_detector

    return create_detector(DetectionConfig())


@pytest.fixture(scope="session")
def sample_path():
    """The bundled sample clip (vtest.avi: 768x576 pedestrians at 10 fps)."""
    return assets.sample_path()


@pytest.fixture(scope="session")
def sample_images(sample_path):
    """The first 40 frames of the sample clip (BGR)."""
    cap = cv2.VideoCapture(str(sample_path))
    images = []
    while len(images) < 40:
        ok, image = cap.read()
        assert ok
        images.append(image)
    cap.release()
    return images


def make_frame(image: np.ndarray, cam: str = "cam1", seq: int = 0, run: int = 1, ts: int | None = None) -> Frame:
    jpeg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 80])[1].tobytes()
    return Frame(cam, run, seq, ts if ts is not None else time.time_ns(), image.shape[1], image.shape[0], jpeg)


@pytest.fixture
def camera():
    return CameraConfig(id="cam1", source="pattern", detection=DetectionConfig(min_score=0.5))
