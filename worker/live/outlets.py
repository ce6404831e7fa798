"""What a worker makes of a camera's frames and where it writes them: the camera's outlet, one per
`ServedCamera`, chosen when it is built, so the worker loop has one path for every camera.

- `Annotating`, a camera without events: detect, draw and encode (`FrameProcessor.process`), then
  write the annotated frame and its detection record; a skipped frame leaves nothing behind.
- `DetectOnly`, an event camera: detect only (the producer's JPEG unchanged) and write the frame's
  `untracked` entry (common/untracked.py); a skipped or dead-lettered frame leaves a skip marker. The
  camera's tracking owner orders, tracks, draws and encodes each frame once, with track ids.

Both run on the worker loop; a write is a (key, fields, maxlen) triple for the publishing thread.
"""

from __future__ import annotations

from common import envelope, untracked
from common.config import CameraConfig, Settings
from common.envelope import Frame
from common.keys import DETECTIONS_FIELD, FRAME_FIELD, Keys
from worker.detect.pipeline import FrameProcessor


class Annotating:
    """The outlet of a camera without events: annotated frames and detection records."""

    def __init__(self, processor: FrameProcessor, settings: Settings, cam: str):
        keys, streams = Keys(settings.key_prefix), settings.streams
        self.processor = processor
        self.annotated = (keys.annotated(cam), streams.annotated_maxlen)
        self.detections = (keys.detections(cam), streams.detections_maxlen)

    def process(self, frame: Frame, *, fps: float | None, max_pixels: int | None) -> Frame:
        """The frame detected, drawn and re-encoded. Raises FrameDecodeError on a corrupt JPEG."""
        return self.processor.process(frame, fps=fps, max_pixels=max_pixels)

    def writes(self, result: Frame, payload: bytes) -> list[tuple[str, dict, int]]:
        """The annotated frame (`payload`, the envelope of `result`) and its detection record."""
        (annotated_key, annotated_maxlen), (detections_key, detections_maxlen) = self.annotated, self.detections
        return [(annotated_key, {FRAME_FIELD: payload}, annotated_maxlen),
                (detections_key, {DETECTIONS_FIELD: envelope.detections_record(result)}, detections_maxlen)]

    def skip_markers(self, frames: list) -> list[tuple[str, dict, int]]:
        """Nothing downstream waits for a frame of this camera: a skipped frame leaves no trace."""
        return []


class DetectOnly:
    """The outlet of an event camera: `untracked` entries for its tracking owner."""

    def __init__(self, processor: FrameProcessor, settings: Settings, cam: str):
        self.processor = processor
        self.key = Keys(settings.key_prefix).untracked(cam)
        self.maxlen = settings.events.untracked_maxlen

    def process(self, frame: Frame, *, fps: float | None, max_pixels: int | None) -> Frame:
        """The frame with its detections, meta `infer_ms` and `work_cpu_ms` and the decode and detect
        marks (as `FrameProcessor.process` sets them; the tracking owner draws and encodes), its JPEG
        as the producer sent it. `fps` is the owner's to draw. Raises FrameDecodeError like `process`."""
        return self.processor.detect_frame(frame, max_pixels=max_pixels).on(frame, frame.jpeg)

    def writes(self, result: Frame, payload: bytes) -> list[tuple[str, dict, int]]:
        """The untracked entry of `payload`, the envelope of `result`."""
        return [untracked.untracked_write(self.key, payload, self.maxlen)]

    def skip_markers(self, frames: list) -> list[tuple[str, dict, int]]:
        """A skip marker for each frame (stream entries or envelope bytes) whose identity can be read,
        so the owner's reorderer releases the frames after it without waiting."""
        return untracked.skip_writes(self.key, list(frames), self.maxlen)


Outlet = Annotating | DetectOnly


def outlet_for(camera: CameraConfig, settings: Settings, processor: FrameProcessor) -> Outlet:
    """The camera's outlet: detect-only when it has events (its tracking owner annotates)."""
    outlet = DetectOnly if camera.events_enabled else Annotating
    return outlet(processor, settings, camera.id)
