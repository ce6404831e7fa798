"""The pure per-frame transform: decode, detect, filter, annotate, encode. No I/O; the live worker
and offline processing both build on it.

A frame carries the producer's motion verdict (`Frame.inspect`): `full` runs the model on the whole
frame; `regions` runs it on squares around the motion boxes (`worker/detect/regions.py`; the whole
frame when regions would not pay); `none` runs nothing. What a frame shows is the camera's scene as
last known to this process: the detections of the newest inspected frame, updated inside the regions
a frame inspected. A frame not inspected whose scene is empty is published as the camera's own JPEG,
neither decoded nor re-encoded; one whose scene holds objects (a parked car) shows them with their
boxes: the process's last drawing of the same objects while it is younger than
`motion.redraw_interval` (nothing moved, so the picture is the same but for noise), else the frame
drawn anew. Every worker learns the scene from the frames
it inspects; the hold after motion (`motion.hold`: every frame inspected in full) refreshes all of them
before frames go uninspected again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from common import jpeg
from common.config import CameraConfig
from common.envelope import INSPECT_FULL, INSPECT_NONE, INSPECT_REGIONS, Detection, Frame, Motion
from common.jpeg import JpegError
from worker.detect.annotate import draw_detections, draw_overlay
from worker.detect.base import Detector
from worker.detect.factory import filter_detections
from worker.detect.regions import detect_in_regions, plan_regions
from worker.detect.still import LastDrawing

Box = tuple[int, int, int, int]


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

    image: np.ndarray | None  # None: the frame was not inspected (nor decoded)
    detections: list[Detection]
    infer_ms: float
    decoded_ns: int
    detected_ns: int
    cpu_started_ns: int  # the thread's CPU clock when the frame's work began
    inspected: str = INSPECT_FULL  # what was done: full, regions or none
    regions: tuple[Box, ...] = ()  # the squares the model ran on, when `inspected` is regions

    def on(self, frame: Frame, jpeg_bytes: bytes) -> Frame:
        """`frame` with these detections, `jpeg_bytes`, meta `infer_ms` and `work_cpu_ms` (the thread's
        CPU since the work began, now), `regions` (the squares inspected) and the `decoded` and
        `detected` marks; its motion verdict says what was done (a `regions` frame inspected in
        full says `full`)."""
        work_cpu_ms = round((time.thread_time_ns() - self.cpu_started_ns) / 1e6, 3)
        meta = {"infer_ms": self.infer_ms, "work_cpu_ms": work_cpu_ms}
        if self.regions:
            meta["regions"] = [list(box) for box in self.regions]
        out = frame.annotated(jpeg_bytes, self.detections, **meta)
        if frame.motion is not None and frame.motion.inspect != self.inspected:
            out = _with_motion(out, Motion(self.inspected, frame.motion.boxes))
        if self.image is None:
            return out
        return out.stamped(decoded=self.decoded_ns, detected=self.detected_ns)


def _with_motion(frame: Frame, motion: Motion) -> Frame:
    return Frame(frame.cam, frame.run, frame.seq, frame.ts, frame.width, frame.height, frame.jpeg,
                 frame.detections, frame.meta, motion)


class Scene:
    """A camera's objects as last known to this process: the detections of its newest inspected
    frame, and inside the regions of a newer regions frame, that frame's."""

    def __init__(self):
        self.order: tuple[int, int] | None = None
        self.detections: list[Detection] = []

    def learn(self, frame: Frame, found: Detected) -> list[Detection]:
        """What `frame` shows once `found` is known: the new detections, and for a regions frame the
        scene's objects outside its regions. The scene takes it when the frame is its newest."""
        if found.inspected == INSPECT_NONE:
            return self.detections
        shown = found.detections
        if found.inspected == INSPECT_REGIONS:
            shown = [d for d in self.detections if not any(_overlaps(d.box, r) for r in found.regions)] + shown
        if self.order is None or frame.order >= self.order:
            self.order, self.detections = frame.order, list(shown)
        return shown


def _overlaps(a: Box, b: Box) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


class FrameProcessor:
    """Detects and annotates one camera's frames with a shared detector. One per camera per process."""

    def __init__(self, camera: CameraConfig, detector: Detector):
        self.camera = camera
        self.detector = detector
        self.model_side = max(detector.info.input_size)
        self.scene = Scene()
        self.still = LastDrawing(camera.motion.redraw_interval)

    def detect(self, image: np.ndarray) -> list[Detection]:
        """The camera's filtered detections for a BGR image."""
        return filter_detections(self.detector.detect(image), self.camera.detection, image.shape)

    def annotate(self, image: np.ndarray, detections: list[Detection], *, fps: float | None = None,
                 ts_ns: int | None = None) -> np.ndarray:
        """Draw boxes (and the overlay when the camera enables it) on a copy of the image."""
        out = draw_detections(image, detections)
        if self.camera.overlay_enabled:
            out = draw_overlay(out, self.camera.id, ts_ns=ts_ns, fps=fps)
        return out

    def detect_frame(self, frame: Frame, *, max_pixels: int | None = None) -> Detected:
        """Decode the frame's JPEG and detect: the image, the detections and their timing. Raises
        FrameDecodeError when the JPEG is corrupt, is not the frame's announced size or has more than
        `max_pixels` (checked before decoding: a small hostile JPEG can claim a huge picture)."""
        cpu_started = time.thread_time_ns()
        if frame.inspect == INSPECT_NONE:
            now = time.time_ns()
            return Detected(None, [], 0.0, now, now, cpu_started, INSPECT_NONE)
        image = decode_jpeg(frame.jpeg, expect=(frame.width, frame.height), max_pixels=max_pixels)
        decoded = time.time_ns()
        started = time.perf_counter()
        regions = self._regions(frame) if frame.inspect == INSPECT_REGIONS else None
        if regions:
            detections = filter_detections(detect_in_regions(self.detector.detect, image, regions),
                                           self.camera.detection, image.shape)
        else:
            detections = self.detect(image)
        infer_ms = (time.perf_counter() - started) * 1000.0
        inspected = INSPECT_REGIONS if regions else INSPECT_FULL
        return Detected(image, detections, round(infer_ms, 2), decoded, time.time_ns(), cpu_started, inspected,
                        tuple(regions or ()))

    def _regions(self, frame: Frame) -> list[Box] | None:
        """The squares to run the model on for a regions frame, or None to inspect it in full."""
        return plan_regions(frame.motion.boxes, (frame.width, frame.height), self.model_side,
                            max_regions=self.camera.motion.max_regions)

    def process(self, frame: Frame, *, fps: float | None = None, max_pixels: int | None = None) -> Frame:
        """The annotated frame for a raw one: same identity and capture time, new JPEG, detections,
        meta `infer_ms`, `work_cpu_ms` (this thread's CPU time for all of it: with one inference
        thread, the frame's whole cost) and the stage marks `decoded`, `detected`, `annotated`,
        `reencoded` (the frame's own work, `common.envelope.COMPUTE_STAGES`). Raises FrameDecodeError
        like `detect_frame`."""
        found = self.detect_frame(frame, max_pixels=max_pixels)
        shown = self.scene.learn(frame, found)
        if found.image is None and not self.camera.overlay_enabled:
            if not shown:
                return found.on(frame, frame.jpeg)  # nothing moved, nothing to draw: the camera's JPEG
            still = self.still.reusable(shown, frame.ts / 1e9)
            if still is not None:
                age_ms = round((frame.ts / 1e9 - still.ts) * 1000, 1)
                return found.on(frame, still.jpeg).annotated(still.jpeg, shown, picture_age_ms=age_ms)
        image = found.image
        if image is None:
            image = decode_jpeg(frame.jpeg, expect=(frame.width, frame.height), max_pixels=max_pixels)
        annotated = self.annotate(image, shown, fps=fps, ts_ns=frame.ts)
        annotated_ns = time.time_ns()
        out = jpeg.encode(annotated, self.camera.jpeg_quality)
        self.still.keep(out, list(shown), frame.ts / 1e9)
        result = found.on(frame, out)
        if shown is not found.detections:
            result = result.annotated(out, shown)
        return result.stamped(annotated=annotated_ns, reencoded=time.time_ns())

