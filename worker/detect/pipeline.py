"""The pure per-frame transform: decode, detect, filter, annotate, encode. No I/O; the live worker
and offline processing both build on it."""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from common import jpeg
from common.config import CameraConfig
from common.envelope import Detection, Frame
from common.jpeg import JpegError
from worker.detect.annotate import draw_detections, draw_overlay
from worker.detect.base import Detector
from worker.detect.factory import filter_detections


class FrameDecodeError(JpegError):
    """A frame's JPEG could not be turned into an image: corrupt, not a JPEG, or not the size announced."""


def decode_jpeg(data: bytes, *, expect: tuple[int, int] | None = None, max_pixels: int | None = None) -> np.ndarray:
    """BGR image from JPEG bytes, its header checked against `expect` (width, height) and `max_pixels`
    before anything is decoded; raises FrameDecodeError."""
    try:
        return jpeg.decode(data, expect=expect, max_pixels=max_pixels)
    except JpegError as exc:
        reason = str(exc)
        raise FrameDecodeError(reason if reason.startswith("undecodable") else f"undecodable JPEG: {reason}") from None


@dataclass(frozen=True, slots=True)
class Detected:
    """A decoded frame's detections, with the times the stage marks and meta record."""

    image: np.ndarray
    detections: list[Detection]
    infer_ms: float
    decoded_ns: int
    detected_ns: int
    cpu_started_ns: int  # the thread's CPU clock when the frame's work began

    def on(self, frame: Frame, jpeg_bytes: bytes) -> Frame:
        """`frame` with these detections, `jpeg_bytes`, meta `infer_ms` and `work_cpu_ms` (the thread's
        CPU since the work began, now) and the `decoded` and `detected` marks."""
        work_cpu_ms = round((time.thread_time_ns() - self.cpu_started_ns) / 1e6, 3)
        return frame.annotated(jpeg_bytes, self.detections, infer_ms=self.infer_ms, work_cpu_ms=work_cpu_ms).stamped(
            decoded=self.decoded_ns, detected=self.detected_ns)


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

    def detect_frame(self, frame: Frame, *, max_pixels: int | None = None) -> Detected:
        """Decode the frame's JPEG and detect: the image, the detections and their timing. Raises
        FrameDecodeError when the JPEG is corrupt, is not the frame's announced size or has more than
        `max_pixels` (checked before decoding: a small hostile JPEG can claim a huge picture)."""
        cpu_started = time.thread_time_ns()
        image = decode_jpeg(frame.jpeg, expect=(frame.width, frame.height), max_pixels=max_pixels)
        decoded = time.time_ns()
        started = time.perf_counter()
        detections = self.detect(image)
        infer_ms = (time.perf_counter() - started) * 1000.0
        return Detected(image, detections, round(infer_ms, 2), decoded, time.time_ns(), cpu_started)

    def process(self, frame: Frame, *, fps: float | None = None, max_pixels: int | None = None) -> Frame:
        """The annotated frame for a raw one: same identity and capture time, new JPEG, detections,
        meta `infer_ms`, `work_cpu_ms` (this thread's CPU time for all of it: with one inference
        thread, the frame's whole cost) and the stage marks `decoded`, `detected`, `annotated`,
        `reencoded` (the frame's own work, `common.envelope.COMPUTE_STAGES`). Raises FrameDecodeError
        like `detect_frame`."""
        found = self.detect_frame(frame, max_pixels=max_pixels)
        annotated = self.annotate(found.image, found.detections, fps=fps, ts_ns=frame.ts)
        annotated_ns = time.time_ns()
        out = jpeg.encode(annotated, self.camera.jpeg_quality)
        return found.on(frame, out).stamped(annotated=annotated_ns, reencoded=time.time_ns())
