"""The pure per-frame transform: decode, detect, filter, annotate, encode. No I/O; the Redis loop
(`worker.consumer`) and offline processing (`worker.offline`) both call it."""

from __future__ import annotations

import time

import cv2
import numpy as np

from common.config import CameraConfig
from common.envelope import Detection, Frame
from common.errors import FramecastError
from worker.annotate import draw_detections, draw_overlay
from worker.detectors import filter_detections
from worker.detectors.base import Detector


class FrameDecodeError(FramecastError):
    """A frame's JPEG bytes could not be decoded into an image."""


def decode_jpeg(data: bytes) -> np.ndarray:
    """BGR image from JPEG bytes; raises FrameDecodeError for anything OpenCV cannot decode."""
    image = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_COLOR) if data else None
    if image is None or image.size == 0:
        raise FrameDecodeError(f"undecodable JPEG ({len(data)} bytes)")
    return image


def encode_jpeg(image: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise FramecastError("JPEG encoding failed")
    return buf.tobytes()


class FrameProcessor:
    """Detects and annotates one camera's frames with a shared detector. One per camera per process."""

    def __init__(self, camera: CameraConfig, detector: Detector):
        self.camera = camera
        self.detector = detector

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The camera's filtered detections for a BGR image."""
        return filter_detections(self.detector.detect(image), self.camera.detection, image.shape)

    def annotate(self, image: np.ndarray, detections: list[Detection], *, fps: float | None = None,
                 ts_ns: int | None = None) -> np.ndarray:
        """Draw boxes (and the overlay when the camera enables it) on a copy of the image."""
        out = draw_detections(image, detections)
        if self.camera.overlay:
            out = draw_overlay(out, self.camera.id, ts_ns=ts_ns, fps=fps)
        return out

    def process(self, frame: Frame, *, fps: float | None = None) -> Frame:
        """The annotated frame for a raw one: same identity and capture time, new JPEG, detections,
        and meta `infer_ms`. Raises FrameDecodeError when the JPEG is corrupt."""
        image = decode_jpeg(frame.jpeg)
        started = time.perf_counter()
        detections = self.detect(image)
        infer_ms = (time.perf_counter() - started) * 1000.0
        annotated = self.annotate(image, detections, fps=fps, ts_ns=frame.ts)
        jpeg = encode_jpeg(annotated, self.camera.jpeg_quality)
        return frame.annotated(jpeg, detections, infer_ms=round(infer_ms, 2))
