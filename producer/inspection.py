"""One camera's inspection verdicts: from the motion found in each frame, in capture order, whether the
workers run the model on the full frame, only on the regions that moved, or not at all.

- A frame with motion is inspected by `regions` (the workers crop the motion boxes; they inspect the
  full frame instead when regions would not pay, `worker/detect/regions.py`).
- For `hold` seconds after motion ends every frame is inspected in full: an object that stopped is
  seen where it stopped, and its track and event go on.
- At least every `full_frame_interval` seconds a frame is inspected in full, moving or not, so an
  object that never moved (a parked car when the camera starts) is known too. These frames fall at a
  phase of the camera's own within the interval (from its id), so cameras started together do not
  send the workers all their full frames at once.
- A frame after which the background was relearnt (the first one, a lighting change, a new size) is
  inspected in full: its motion says nothing.
- Any other frame is `none`: no decode and no inference on the workers.

Sequential per camera (the producer's camera thread); no I/O.
"""

from __future__ import annotations

import math
import zlib

from common.envelope import INSPECT_FULL, INSPECT_NONE, INSPECT_REGIONS, MAX_MOTION_BOXES, Motion
from common.motion_config import MotionConfig
from producer.motion import MotionDetector, MotionResult


class InspectionGate:
    """Turns each frame's motion into the envelope's verdict (`Motion`)."""

    def __init__(self, config: MotionConfig, detector: MotionDetector | None = None, cam: str = ""):
        self.config = config
        self.phase = camera_phase(cam) * config.full_frame_interval
        self.detector = detector or MotionDetector(threshold=config.threshold, min_area=config.min_area,
                                                   masks=config.masks, lighting=config.lighting)
        self._last_full: float | None = None
        self._last_motion: float | None = None

    def verdict(self, result: MotionResult, ts: float, width: int, height: int) -> Motion:
        """The verdict on a frame captured at `ts` (seconds), `width` x `height` as published."""
        boxes = tuple(_pixels(box, width, height) for box in result.boxes)
        boxes = tuple(box for box in boxes if box is not None)
        if boxes:
            self._last_motion = ts
        inspect = self._inspect(result, bool(boxes), ts)
        if len(boxes) > MAX_MOTION_BOXES:  # motion all over: no region plan would pay
            inspect, boxes = INSPECT_FULL, ()
        if inspect == INSPECT_FULL:
            self._last_full = ts
        return Motion(inspect, boxes)

    def _slot(self, ts: float) -> int:
        """The full-frame interval `ts` falls in; a new one wants a full frame (so at most an interval
        and a frame apart)."""
        return math.floor((ts - self.phase) / self.config.full_frame_interval)

    def _inspect(self, result: MotionResult, moved: bool, ts: float) -> str:
        if result.recalibrated or self._last_full is None or self._slot(ts) > self._slot(self._last_full):
            return INSPECT_FULL
        if moved:
            return INSPECT_REGIONS if self.config.max_regions > 0 else INSPECT_FULL
        if self._last_motion is not None and ts - self._last_motion <= self.config.hold:
            return INSPECT_FULL
        return INSPECT_NONE


def camera_phase(cam: str) -> float:
    """Where in each full-frame interval (0..1) the camera's periodic full frames fall: spread over
    cameras and the same across restarts."""
    return zlib.crc32(cam.encode()) / 2**32


def _pixels(box: tuple[float, float, float, float], width: int, height: int) -> tuple[int, int, int, int] | None:
    """A fractional box in the published frame's pixels (clipped; None when it has no area)."""
    x1, y1, x2, y2 = box
    px = (max(0, min(width, int(x1 * width))), max(0, min(height, int(y1 * height))),
          max(0, min(width, -int(-x2 * width))), max(0, min(height, -int(-y2 * height))))
    return px if px[0] < px[2] and px[1] < px[3] else None
